// Where a pipeline's queues and bookkeeping live in Redis, laid out for a Redis Cluster: a
// cluster places a key by its hash tag (the text between the first `{` and the next `}`), and a
// command or script may only touch keys of one slot.
//   - the pipeline's own keys (run, live, hops, streams, counters, dead) share the tag {P};
//   - each stage's keys (its stream, or its partitions' streams, leases and next seqs) share the
//     tag {P:STAGE}: one slot per stage, so a cluster spreads a pipeline's stages over shards,
//     and the scripts of a partition (lease, next seq, stream) touch one slot;
//   - each stored image has a tag of its own, {P:img:X}, so images spread over every slot.
#pragma once

#include <string>
#include <string_view>

namespace micromodels::detail {

class StreamNames {
 public:
  explicit StreamNames(std::string_view pipeline) : pipeline_(pipeline) {}

  /// The stage's stream (partition `k` of `partitions` for a per_stream stage); its consumer
  /// group is named after the stage.
  [[nodiscard]] std::string stream(std::string_view stage, int k = 0, int partitions = 1) const {
    std::string key = "mm:{" + pipeline_ + ":" + std::string(stage) + "}";
    if (partitions > 1) key += ":p" + std::to_string(k);
    return key;
  }
  /// Who owns a per_stream partition (SET NX PX, renewed), and its next seq per stream: in the
  /// slot of the partition's stream.
  [[nodiscard]] std::string lease(std::string_view stream_key) const {
    return std::string(stream_key) + ":lease";
  }
  [[nodiscard]] std::string next_seq(std::string_view stream_key) const {
    return std::string(stream_key) + ":next";
  }
  [[nodiscard]] std::string dead_letter() const { return own("dead"); }
  [[nodiscard]] std::string run() const { return own("run"); }          // the run's id
  [[nodiscard]] std::string live() const { return own("live"); }        // zset of consumers
  [[nodiscard]] std::string hops() const { return own("hops"); }        // hash of byte counts
  [[nodiscard]] std::string streams() const { return own("streams"); }  // key -> stage
  [[nodiscard]] std::string counters() const { return own("counters"); }
  /// An image stored by reference; `id` is unique to it (16 random-looking hex digits).
  [[nodiscard]] std::string image(std::string_view id) const {
    return "mm:{" + pipeline_ + ":img:" + std::string(id) + "}";
  }
  /// Whether `key` is one of image()'s keys.
  [[nodiscard]] bool is_image(std::string_view key) const {
    const std::string start = "mm:{" + pipeline_ + ":img:";
    return key.size() > start.size() + 1 && key.starts_with(start) && key.ends_with('}');
  }
  /// The set of pipeline names, for `micromodels status`.
  [[nodiscard]] static std::string pipelines() { return "mm:pipelines"; }

 private:
  [[nodiscard]] std::string own(std::string_view what) const {
    return "mm:{" + pipeline_ + "}:" + std::string(what);
  }

  std::string pipeline_;
};

}  // namespace micromodels::detail
