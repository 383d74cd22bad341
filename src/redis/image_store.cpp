#include "image_store.hpp"

#include <algorithm>
#include <random>

#include <spdlog/fmt/fmt.h>

#include "micromodels/packet_codec.hpp"

namespace micromodels::detail {

namespace {

// A process's id among the image keys: random, so that a restarted process (same host and
// pid, as in a container) never writes over the keys of its former self.
std::string process_id() {
  std::random_device random;
  return fmt::format("{:x}", (static_cast<std::uint64_t>(random()) << 32) ^ random());
}

}  // namespace

ImageStore::ImageStore(Writer& writer, const StreamNames& names, WireImages images, int ttl_s,
                       std::size_t in_flight, std::size_t min_cache_bytes)
    : writer_(writer),
      names_(names),
      id_(process_id()),
      images_(images),
      ttl_s_(ttl_s),
      cache_(min_cache_bytes, in_flight) {}

ImageRef ImageStore::reference(const Image& image, std::uint64_t& stored) {
  if (std::optional<ImageRef> known = cache_.ref_of(image)) {
    carry(*known);
    return *known;
  }
  const PackedImage packed = pack_image(image, images_);
  ImageRef ref{.key = names_.image(fmt::format("{}:{:x}", id_, next_.fetch_add(1))),
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
