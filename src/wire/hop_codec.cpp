#include "hop_codec.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

#include "micromodels/packet_codec.hpp"
#include "micromodels/pipeline.hpp"

#include "core/detail/transport_fields.hpp"
#include "retired_keys.hpp"

namespace micromodels::detail {

namespace {

// A marker field, "\x01wire:" + the image's name, says how the field of that name travels:
// "png" or "jpeg" (compressed bytes), "ref" (an image reference).
constexpr std::string_view kMarker = "\x01wire:";
constexpr std::string_view kRef = "ref";
static_assert(kMarker.front() == kTransportFieldMark);

std::string marker(std::string_view name) { return std::string(kMarker) + std::string(name); }

std::int64_t wall_clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_ref(const Packet& packet, std::string_view name) {
  const auto* how = std::get_if<std::string>(packet.find(marker(name)));
  return how != nullptr && *how == kRef && std::holds_alternative<Buffer>(*packet.find(name));
}

}  // namespace

WireImages parse_wire_images(const std::string& kind, int jpeg_quality, std::string_view kind_from,
                             std::string_view quality_from) {
  WireImages images;
  images.jpeg_quality = jpeg_quality;
  if (jpeg_quality < 1 || jpeg_quality > 100) {
    throw ConfigError({}, "jpeg_quality",
                      std::string(quality_from) + " must be from 1 to 100, got " +
                          std::to_string(jpeg_quality));
  }
  if (kind == "raw") return images;
  if (kind != "png" && kind != "jpeg") {
    throw ConfigError({}, "wire_images",
                      std::string(kind_from) + " '" + kind + "': expected raw, png or jpeg");
  }
#ifdef MICROMODELS_WIRE_HAS_OPENCV
  images.kind = kind == "png" ? WireImages::Kind::png : WireImages::Kind::jpeg;
  return images;
#else
  throw ConfigError({}, "wire_images",
                    std::string(kind_from) + " " + kind +
                        ": this build has no OpenCV (build with the vision stages); use raw");
#endif
}

WireImages wire_images_for(const std::string& images, int jpeg_quality, const Pipeline& pipeline) {
  const std::string file = "pipeline '" + pipeline.name() + "': wire.";
  return parse_wire_images(images.empty() ? pipeline.wire().images : images,
                           jpeg_quality != 0 ? jpeg_quality : pipeline.wire().jpeg_quality,
                           images.empty() ? file + "images" : "--wire-images",
                           jpeg_quality != 0 ? "--jpeg-quality" : file + "jpeg_quality");
}

namespace {

// a - b, held at the int64 range: an entry from elsewhere may carry any time at all.
std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!__builtin_sub_overflow(a, b, &out)) return out;
  return b < 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
}

}  // namespace

std::int64_t capture_to_wall(std::int64_t capture_ns) {
  if (capture_ns == 0) return 0;
  const std::int64_t age = std::max<std::int64_t>(0, saturating_sub(capture_clock_ns(), capture_ns));
  return saturating_sub(wall_clock_ns(), age);
}

std::int64_t capture_from_wall(std::int64_t wall_ns) {
  if (wall_ns == 0) return 0;
  // A sender's clock ahead of ours would make the packet younger than new: clamped at 0.
  const std::int64_t age = std::max<std::int64_t>(0, saturating_sub(wall_clock_ns(), wall_ns));
  return saturating_sub(capture_clock_ns(), age);
}

std::string encode_for_hop(const Packet& packet, const std::optional<std::set<std::string>>& keep,
                           const WireImages& images, ImageRefs* refs, std::uint64_t* stored) {
  Packet wire{.stream = packet.stream, .seq = packet.seq, .time_ns = packet.time_ns,
              .capture_ns = capture_to_wall(packet.capture_ns)};
  std::uint64_t stored_here = 0;
  const bool retires = refs != nullptr && refs->retires();
  std::set<std::string> referred;  // the keys this hop's fields refer to (when it retires keys)
  for (const Packet::Field& f : packet.fields) {
    if (f.name.starts_with(kMarker)) continue;  // markers follow their fields
    if (is_retired_field(f.name)) continue;     // written on below, without the keys still used
    if (keep && !keep->contains(f.name)) continue;
    if (is_ref(packet, f.name)) {  // never fetched here: the reference goes on
      if (refs != nullptr) {
        const ImageRef ref = decode_ref(std::get<Buffer>(f.value).span());
        refs->carry(ref);
        if (retires) referred.insert(ref.key);
      }
      wire.fields.push_back(f);
      wire.fields.push_back({marker(f.name), std::string(kRef)});
      continue;
    }
    if (const auto* image = std::get_if<Image>(&f.value); image != nullptr) {
      if (refs != nullptr && image->pixels.data() != nullptr) {
        const ImageRef ref = refs->reference(*image, stored_here);
        if (retires) referred.insert(ref.key);
        const std::string bytes = encode_ref(ref);
        wire.fields.push_back({f.name, Buffer::copy_of(bytes.data(), bytes.size())});
        wire.fields.push_back({marker(f.name), std::string(kRef)});
        continue;
      }
      if (images.kind != WireImages::Kind::raw) {
        PackedImage packed = pack_image(*image, images);
        if (packed.encoding != WireImages::Kind::raw) {
          wire.fields.push_back({f.name, std::move(packed.bytes)});
          wire.fields.push_back(
              {marker(f.name), std::string(packed.encoding == WireImages::Kind::png ? "png" : "jpeg")});
          continue;
        }
      }
    }
    wire.fields.push_back(f);  // buffers are shared, not copied
  }
  if (retires) {
    // A key that a field of this hop still refers to (an image passed on unchanged, perhaps
    // under another name) is not retired here: the stages after the hop may fetch it.
    std::set<std::string> retired = held_keys(packet);
    for (const std::string& key : referred) retired.erase(key);
    if (!retired.empty()) wire.fields.push_back({std::string(kRetired), encode_keys(retired)});
  }
  if (stored != nullptr) *stored += stored_here;
  const std::vector<std::byte> bytes = encode_packet(wire);
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

Packet decode_hop(std::string_view payload) {
  Packet packet = decode_packet(std::as_bytes(std::span(payload.data(), payload.size())));
  packet.capture_ns = capture_from_wall(packet.capture_ns);
  std::vector<std::string> markers;
  for (const Packet::Field& f : packet.fields) {
    if (f.name.starts_with(kMarker)) markers.push_back(f.name);
  }
  (void)held_keys(packet);  // a retired list that does not decode fails here, like a marker
  for (const std::string& m : markers) {
    const std::string name = m.substr(kMarker.size());
    const auto* how = std::get_if<std::string>(packet.find(m));
    const auto* packed = std::get_if<Buffer>(packet.find(name));
    if (how == nullptr || packed == nullptr) {
      throw CodecError("image '" + name + "' is missing, or its marker is not text");
    }
    if (*how == kRef) continue;  // fetched by the processes that read it (references())
    if (*how != "png" && *how != "jpeg") {
      throw CodecError("image '" + name + "' travels as '" + *how + "' (expected png, jpeg or ref)");
    }
    packet.set(name, unpack_compressed(packed->span(), "'" + name + "'"));
    packet.erase(m);
  }
  return packet;
}

std::vector<std::pair<std::string, ImageRef>> references(const Packet& packet) {
  std::vector<std::pair<std::string, ImageRef>> refs;
  for (const Packet::Field& f : packet.fields) {
    if (!f.name.starts_with(kMarker)) continue;
    const std::string name = f.name.substr(kMarker.size());
    if (is_ref(packet, name)) refs.emplace_back(name, decode_ref(std::get<Buffer>(*packet.find(name)).span()));
  }
  return refs;
}

void resolve(Packet& packet, const std::string& name, Image image) {
  packet.set(name, std::move(image));
  packet.erase(marker(name));
}

}  // namespace micromodels::detail
