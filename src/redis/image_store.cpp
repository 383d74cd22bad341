#include "image_store.hpp"

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

ImageStore::ImageStore(Writer& writer, const StreamNames& names, WireImages images, int ttl_s)
    : writer_(writer),
      names_(names),
      id_(process_id()),
      images_(images),
      ttl_s_(ttl_s),
      cache_(std::size_t{256} << 20) {}

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
  std::vector<const ImageRef*> asked;
  for (const ImageRef& ref : refs) {
    if (found.contains(ref.key)) continue;
    if (std::optional<Image> image = cache_.image_at(ref.key)) {
      found.emplace(ref.key, std::move(*image));
      continue;
    }
    found.emplace(ref.key, std::string());
    conn.append({"GET", ref.key});
    asked.push_back(&ref);
  }
  if (asked.empty()) return found;
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
  return found;
}

}  // namespace micromodels::detail
