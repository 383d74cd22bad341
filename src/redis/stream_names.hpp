// Where a pipeline's queues and bookkeeping live in Redis. Every key of one pipeline shares the
// hash tag {pipeline}, so that a Redis Cluster keeps them on one shard.
#pragma once

#include <string>
#include <string_view>

namespace micromodels::detail {

class StreamNames {
 public:
  explicit StreamNames(std::string_view pipeline) : prefix_("mm:{" + std::string(pipeline) + "}:") {}

  /// The stage's stream (partition `k` of `partitions` for a per_stream stage); its consumer
  /// group is named after the stage.
  [[nodiscard]] std::string stream(std::string_view stage, int k = 0, int partitions = 1) const {
    std::string key = prefix_ + std::string(stage);
    if (partitions > 1) key += ":p" + std::to_string(k);
    return key;
  }
  /// Who owns a per_stream partition (SET NX PX, renewed), and its next seq per stream.
  [[nodiscard]] std::string lease(std::string_view stream_key) const {
    return std::string(stream_key) + ":lease";
  }
  [[nodiscard]] std::string next_seq(std::string_view stream_key) const {
    return std::string(stream_key) + ":next";
  }
  [[nodiscard]] std::string dead_letter() const { return prefix_ + "dead"; }
  [[nodiscard]] std::string run() const { return prefix_ + "run"; }         // the run's id
  [[nodiscard]] std::string live() const { return prefix_ + "live"; }       // zset of consumers
  [[nodiscard]] std::string hops() const { return prefix_ + "hops"; }       // hash of byte counts
  [[nodiscard]] std::string streams() const { return prefix_ + "streams"; } // key -> stage
  [[nodiscard]] std::string counters() const { return prefix_ + "counters"; }
  /// Where images stored by reference live: this + a process's id + ":" + a count.
  [[nodiscard]] std::string images() const { return prefix_ + "img:"; }
  /// The set of pipeline names, for `micromodels status`.
  [[nodiscard]] static std::string pipelines() { return "mm:pipelines"; }

 private:
  std::string prefix_;
};

}  // namespace micromodels::detail
