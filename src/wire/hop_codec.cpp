#include "hop_codec.hpp"

#include <cstring>

#include "micromodels/packet_codec.hpp"
#include "micromodels/pipeline.hpp"

#ifdef MICROMODELS_WIRE_HAS_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace micromodels::detail {

namespace {

constexpr std::string_view kMarker = "\x01wire:";  // + field name; value: "png" or "jpeg"

#ifdef MICROMODELS_WIRE_HAS_OPENCV
std::optional<Buffer> compress(const Image& image, const WireImages& images) {
  if (image.depth != Depth::u8 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() < image.byte_size() || image.width <= 0 || image.height <= 0) {
    return std::nullopt;
  }
  const cv::Mat mat(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3,
                    const_cast<std::byte*>(image.pixels.data()));
  std::vector<unsigned char> bytes;
  const bool png = images.kind == WireImages::Kind::png;
  std::vector<int> flags;
  if (!png) flags = {cv::IMWRITE_JPEG_QUALITY, images.jpeg_quality};
  if (!cv::imencode(png ? ".png" : ".jpg", mat, bytes, flags)) return std::nullopt;
  return Buffer::copy_of(bytes.data(), bytes.size());
}
#endif

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

std::string encode_for_hop(const Packet& packet, const std::optional<std::set<std::string>>& keep,
                           const WireImages& images) {
  Packet wire{.stream = packet.stream, .seq = packet.seq, .time_ns = packet.time_ns};
  for (const Packet::Field& f : packet.fields) {
    if (keep && !keep->contains(f.name)) continue;
#ifdef MICROMODELS_WIRE_HAS_OPENCV
    if (const auto* image = std::get_if<Image>(&f.value);
        image != nullptr && images.kind != WireImages::Kind::raw) {
      if (std::optional<Buffer> packed = compress(*image, images)) {
        wire.fields.push_back({f.name, std::move(*packed)});
        wire.fields.push_back({std::string(kMarker) + f.name,
                               std::string(images.kind == WireImages::Kind::png ? "png" : "jpeg")});
        continue;
      }
    }
#else
    (void)images;
#endif
    wire.fields.push_back(f);  // buffers are shared, not copied
  }
  const std::vector<std::byte> bytes = encode_packet(wire);
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

Packet decode_hop(std::string_view payload) {
  Packet packet = decode_packet(std::as_bytes(std::span(payload.data(), payload.size())));
  std::vector<std::string> markers;
  for (const Packet::Field& f : packet.fields) {
    if (f.name.starts_with(kMarker)) markers.push_back(f.name);
  }
  for (const std::string& marker : markers) {
    const std::string name = marker.substr(kMarker.size());
#ifdef MICROMODELS_WIRE_HAS_OPENCV
    const auto* packed = std::get_if<Buffer>(packet.find(name));
    if (packed == nullptr) throw CodecError("compressed image '" + name + "' is missing");
    const cv::Mat bytes(1, static_cast<int>(packed->size()), CV_8UC1,
                        const_cast<std::byte*>(packed->data()));
    const cv::Mat mat = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
    if (mat.empty() || mat.depth() != CV_8U) {
      throw CodecError("compressed image '" + name + "' does not decode");
    }
    Image image = Image::allocate(mat.cols, mat.rows, mat.channels());
    const std::size_t row = static_cast<std::size_t>(mat.cols) * static_cast<std::size_t>(mat.channels());
    for (int y = 0; y < mat.rows; ++y) {
      std::memcpy(image.pixels.mutable_data() + static_cast<std::size_t>(y) * row, mat.ptr(y), row);
    }
    packet.set(name, std::move(image));
#else
    throw CodecError("image '" + name +
                     "' arrived compressed, and this build has no OpenCV to decode it");
#endif
    packet.erase(marker);
  }
  return packet;
}

}  // namespace micromodels::detail
