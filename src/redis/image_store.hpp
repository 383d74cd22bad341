// Images by reference on Redis: an image goes to Redis once, as a plain key with a TTL
// (`SET key bytes PX ttl`, through the writer, so before the entry that refers to it), and hops
// carry its reference. A process that reads the pixels fetches them once (pipelined GETs for a
// batch; a key another of its inlets is fetching is waited for, not asked again) and keeps them
// in its ImageCache; a hop that carries a reference on renews the key's TTL. Once every sink of
// the pipeline has settled a frame, the keys its packets referred to, and those its hops retired
// on the way (an image a stage replaced, or that no stage after a hop reads), are shortened to a
// few seconds (`settled`), so that Redis holds the images of the frames in flight, not of the
// last `wire.image_ttl_s`.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "redis_connection.hpp"
#include "stream_names.hpp"
#include "wire/hop_codec.hpp"
#include "wire/image_cache.hpp"
#include "writer.hpp"

namespace micromodels::detail {

class ImageStore final : public ImageRefs {
 public:
  /// Keys are `names.image(X)`: X 16 hex digits, unique to the image and random-looking; `ttl_s` is
  /// wire.image_ttl_s; `in_flight` the packets the pipeline can hold (its queues' capacities),
  /// which the cache keeps the images of (ImageCache); `settling` what `settled` leaves a key
  /// once each of the pipeline's sinks settled its frame (`ttl_ms` 0: nothing, keys go by
  /// `ttl_s`). `names` outlives the store.
  struct Settling {
    std::int64_t ttl_ms = 0;
    std::size_t sinks = 0;
  };
  ImageStore(Writer& writer, const StreamNames& names, WireImages images, int ttl_s,
             std::size_t in_flight, Settling settling,
             std::size_t min_cache_bytes = std::size_t{256} << 20);

  ImageRef reference(const Image& image, std::uint64_t& stored) override;
  void carry(const ImageRef& ref) override;
  /// With settling: hops carry the keys they retire on to the sinks, whose inlets add them to
  /// their frame's keys.
  [[nodiscard]] bool retires() const override {
    return settling_.ttl_ms > 0 && settling_.sinks > 0;
  }
  /// A sink settled frame (stream, seq), whose packet referred to `keys` or carried them as
  /// retired (retired_keys.hpp). Once every sink did, the keys of all of them go
  /// `settling.ttl_ms` from now: the time a duplicate still on its way needs them (a packet taken
  /// back from a dead process runs again, and fetches its images), unless a hop carries them on
  /// meanwhile. Only this pipeline's image keys: a corrupt entry cannot make a stream expire.
  void settled(std::uint32_t stream, std::uint64_t seq, std::vector<std::string> keys);

  /// The pixels of each reference, by key: from the cache, else fetched with one GET per key,
  /// pipelined on `conn`; or why not (the key expired or was deleted, or holds other bytes). A
  /// key that another thread is fetching meanwhile is waited for, then taken from the cache: one
  /// GET per key and process, however many inlets read it at once. Throws BrokerError when Redis
  /// is unreachable.
  using Fetched = std::variant<Image, std::string>;
  [[nodiscard]] std::map<std::string, Fetched> fetch(Connection& conn,
                                                     const std::vector<ImageRef>& refs);

 private:
  // One round of fetch: GETs the keys nobody is fetching; `others` gets those another thread is.
  void fetch_round(Connection& conn, const std::vector<const ImageRef*>& refs,
                   std::map<std::string, Fetched>& found, std::vector<const ImageRef*>& others);

  Writer& writer_;
  const StreamNames& names_;
  const std::uint64_t seed_;  // where this process's image keys start (mixed: image_store.cpp)
  const WireImages images_;
  const int ttl_s_;
  const Settling settling_;
  std::mutex settled_mutex_;
  struct Frame {
    std::size_t sinks = 0;  // that settled it
    std::vector<std::string> keys{};
  };
  std::map<std::pair<std::uint32_t, std::uint64_t>, Frame> settling_frames_;
  ImageCache cache_;  // the images this process stored or fetched
  std::atomic<std::uint64_t> next_{0};
  std::mutex fetching_mutex_;
  std::condition_variable fetched_;  // a key left fetching_
  std::set<std::string> fetching_;   // keys whose GET is on its way, on some thread
};

}  // namespace micromodels::detail
