#include "image_store.hpp"

#include <algorithm>
#include <random>

#include <spdlog/fmt/fmt.h>

#include "micromodels/packet_codec.hpp"

namespace micromodels::detail {

namespace {

// Where a process's image keys start: random, so that a restarted process (same host and pid,
// as in a container) never writes over the keys of its former self.
std::uint64_t process_seed() {
  std::random_device random;
  return (static_cast<std::uint64_t>(random()) << 32) ^ random();
}

// splitmix64's finaliser: one-to-one, so a process's keys never repeat, and random-looking, so
// that a Redis Cluster's CRC16 spreads them over its slots as it would random keys. (Keys made
// of a process id and a count, as before, differ in a character or two, and the CRC is linear:
// in about one run in eighty, 3 to 14 of two processes' 60 images fell on a slot that another
// of them had.)
std::uint64_t mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

ImageStore::ImageStore(Writer& writer, const StreamNames& names, WireImages images, int ttl_s,
                       std::size_t in_flight, Settling settling, std::size_t min_cache_bytes)
    : writer_(writer),
      names_(names),
      seed_(process_seed()),
      images_(images),
      ttl_s_(ttl_s),
      settling_(settling),
      cache_(min_cache_bytes, in_flight) {}

ImageRef ImageStore::reference(const Image& image, std::uint64_t& stored) {
  if (std::optional<ImageRef> known = cache_.ref_of(image)) {
    carry(*known);
    return *known;
  }
  const PackedImage packed = pack_image(image, images_);
  ImageRef ref{.key = names_.image(fmt::format("{:016x}", mix(seed_ + next_.fetch_add(1)))),
               .encoding = packed.encoding,
               .depth = image.depth,
               .channels = image.channels,
               .width = image.width,
               .height = image.height,
               .size = packed.bytes.size(),
               .check = content_check(packed.bytes.span())};
  Args set{"SET", ref.key};
  set.add(std::string(reinterpret_cast<const char*>(packed.bytes.data()), packed.bytes.size()));
  set.add("PX").add(static_cast<std::uint64_t>(ttl_s_) * 1000);
  writer_.add(std::move(set));  // before the entry that refers to it: the writer keeps order
  cache_.keep(ref, image);
  stored += ref.size;
  return ref;
}

void ImageStore::carry(const ImageRef& ref) {
  writer_.add({"PEXPIRE", ref.key, std::to_string(static_cast<std::uint64_t>(ttl_s_) * 1000)});
}

void ImageStore::settled(std::uint32_t stream, std::uint64_t seq, std::vector<std::string> keys) {
  if (settling_.ttl_ms <= 0 || settling_.sinks == 0) return;
  std::vector<std::string> going;
  {
    std::lock_guard lock(settled_mutex_);
    Frame& frame = settling_frames_[{stream, seq}];
    frame.keys.insert(frame.keys.end(), std::make_move_iterator(keys.begin()),
                      std::make_move_iterator(keys.end()));
    if (++frame.sinks < settling_.sinks) return;
    going = std::move(frame.keys);
    settling_frames_.erase({stream, seq});
  }
  std::sort(going.begin(), going.end());
  going.erase(std::unique(going.begin(), going.end()), going.end());
  for (const std::string& key : going) {
    if (names_.is_image(key)) writer_.add({"PEXPIRE", key, std::to_string(settling_.ttl_ms)});
  }
}

std::map<std::string, ImageStore::Fetched> ImageStore::fetch(Connection& conn,
                                                             const std::vector<ImageRef>& refs) {
  std::map<std::string, Fetched> found;
  std::vector<const ImageRef*> wanted;
  for (const ImageRef& ref : refs) {
    if (found.emplace(ref.key, std::string()).second) wanted.push_back(&ref);
  }
  while (!wanted.empty()) {
    std::vector<const ImageRef*> others;
    fetch_round(conn, wanted, found, others);
    if (others.empty()) break;
    // Their GETs are on their way on another thread (another inlet of this process): wait for
    // them to land in the cache, then look again; what is still missing then (evicted at once,
    // or the other fetch failed) is asked for in the next round.
    std::unique_lock lock(fetching_mutex_);
    fetched_.wait(lock, [&] {
      return std::none_of(others.begin(), others.end(),
                          [&](const ImageRef* ref) { return fetching_.contains(ref->key); });
    });
    wanted = std::move(others);
  }
  return found;
}

void ImageStore::fetch_round(Connection& conn, const std::vector<const ImageRef*>& refs,
                             std::map<std::string, Fetched>& found,
                             std::vector<const ImageRef*>& others) {
  std::vector<const ImageRef*> asked;
  for (const ImageRef* ref : refs) {
    // The cache is looked at under the same lock as the keys on their way: a fetch keeps its
    // image before its key leaves fetching_, so a key that is in neither is nobody's.
    std::lock_guard lock(fetching_mutex_);
    if (std::optional<Image> image = cache_.image_at(ref->key)) {
      found[ref->key] = std::move(*image);
      continue;
    }
    if (!fetching_.insert(ref->key).second) {
      others.push_back(ref);
      continue;
    }
    asked.push_back(ref);
  }
  if (asked.empty()) return;
  // However this round ends (Redis unreachable: BrokerError), its keys are no longer on their way.
  struct Done {
    ImageStore& store;
    const std::vector<const ImageRef*>& asked;
    ~Done() {
      {
        std::lock_guard lock(store.fetching_mutex_);
        for (const ImageRef* ref : asked) store.fetching_.erase(ref->key);
      }
      store.fetched_.notify_all();
    }
  } done{*this, asked};
  for (const ImageRef* ref : asked) conn.append({"GET", ref->key});
  conn.send();
  for (const ImageRef* ref : asked) {
    const Reply reply = conn.read();
    Fetched& result = found[ref->key];
    if (reply->type == REDIS_REPLY_NIL) {
      result = "image key " + ref->key + " is gone from Redis: it expired (wire.image_ttl_s is " +
               std::to_string(ttl_s_) + " s after the last hop that carried it; raise it above " +
               "the longest an entry waits in a stage's stream) or was deleted";
      continue;
    }
    if (reply->type != REDIS_REPLY_STRING) {
      result = "image key " + ref->key + ": Redis answered " +
               (is_error(reply.get()) ? std::string(text(reply.get())) : std::string("no string"));
      continue;
    }
    try {
      Image image = unpack_image(Buffer::copy_of(reply->str, reply->len), *ref);
      cache_.keep(*ref, image);
      result = std::move(image);
    } catch (const CodecError& error) {
      result = error.what();
    }
  }
}

}  // namespace micromodels::detail
