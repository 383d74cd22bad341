// `image.blend`: composites the generated patch into the frame through its alpha mask. The
// result is a new frame (buffers are shared and immutable); the original stays available as
// `input_frame` for side-by-side output. Stateless: any number of consumers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stage_registration.hpp"

namespace micromodels::vision {

namespace {

template <class T>
const T* optional_field(const Packet& packet, std::string_view name) {
  const Value* value = packet.find(name);
  if (value == nullptr) return nullptr;
  const T* typed = std::get_if<T>(value);
  if (typed == nullptr) {
    throw FieldError("field '" + std::string(name) + "' holds " +
                     std::string(value_type_name(value->index())));
  }
  return typed;
}

bool has_pixels(const Image& image) {
  return image.width > 0 && image.height > 0 && image.channels > 0 &&
         image.pixels.size() >= image.byte_size();
}

class ImageBlend final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    const auto* frame = optional_field<Image>(packet, "frame");
    if (frame == nullptr) {  // nothing to blend into: pass through
      out.push_back(std::move(packet));
      return;
    }
    const Image original = *frame;  // shares the buffer: no pixel copy
    if (std::optional<Image> blended = blend(packet, original)) {
      packet.set("frame", std::move(*blended));
    }
    packet.set("input_frame", original);
    out.push_back(std::move(packet));
  }

 private:
  // The blended frame, or nullopt when the packet has nothing (visible) to blend.
  static std::optional<Image> blend(const Packet& packet, const Image& frame) {
    const auto* patch = optional_field<Image>(packet, "generated");
    const auto* mask = optional_field<Image>(packet, "generated_mask");
    const auto* roi = optional_field<Rects>(packet, "generated_roi");
    if (patch == nullptr || mask == nullptr || roi == nullptr || roi->empty()) return std::nullopt;
    if (!has_pixels(frame) || !has_pixels(*patch) || !has_pixels(*mask)) return std::nullopt;
    if (frame.depth != Depth::u8 || patch->depth != Depth::u8 || mask->depth != Depth::u8 ||
        patch->channels != frame.channels || mask->channels != 1 || mask->width != patch->width ||
        mask->height != patch->height) {
      throw std::invalid_argument(
          "image.blend: 'generated' must be 8-bit with the frame's channels and "
          "'generated_mask' 8-bit, 1 channel, the patch's size");
    }
    const Rect& where = roi->front();
    if (!std::isfinite(where.x) || !std::isfinite(where.y)) return std::nullopt;
    // The patch's top-left in the frame; the part falling outside the frame is clipped.
    const long ox = std::lround(where.x);
    const long oy = std::lround(where.y);
    const long x0 = std::max(0L, ox);
    const long y0 = std::max(0L, oy);
    const long x1 = std::min<long>(frame.width, ox + patch->width);
    const long y1 = std::min<long>(frame.height, oy + patch->height);
    if (x0 >= x1 || y0 >= y1) return std::nullopt;

    // The one copy of the frame (a Buffer's bytes are immutable once shared), then only the
    // clipped ROI is touched.
    const std::byte* begin = frame.pixels.data();
    Image result{.width = frame.width,
                 .height = frame.height,
                 .channels = frame.channels,
                 .depth = Depth::u8,
                 .pixels = Buffer(std::vector<std::byte>(begin, begin + frame.byte_size()))};
    std::byte* dst = result.pixels.mutable_data();
    const auto c = static_cast<std::size_t>(frame.channels);
    const auto frame_stride = static_cast<std::size_t>(frame.width) * c;
    const auto patch_stride = static_cast<std::size_t>(patch->width) * c;
    const auto* src_patch = reinterpret_cast<const std::uint8_t*>(patch->pixels.data());
    const auto* src_mask = reinterpret_cast<const std::uint8_t*>(mask->pixels.data());
    auto* out = reinterpret_cast<std::uint8_t*>(dst);
    for (long y = y0; y < y1; ++y) {
      const auto py = static_cast<std::size_t>(y - oy);
      const std::uint8_t* alpha = src_mask + py * static_cast<std::size_t>(mask->width);
      const std::uint8_t* g = src_patch + py * patch_stride;
      std::uint8_t* f = out + static_cast<std::size_t>(y) * frame_stride;
      for (long x = x0; x < x1; ++x) {
        const auto px = static_cast<std::size_t>(x - ox);
        const unsigned a = alpha[px];
        if (a == 0) continue;  // the input pixel, bit for bit
        for (std::size_t k = 0; k < c; ++k) {
          std::uint8_t& o = f[static_cast<std::size_t>(x) * c + k];
          // Rounded (f (255 - a) + g a) / 255: exact at a = 0 and a = 255.
          o = static_cast<std::uint8_t>((o * (255 - a) + g[px * c + k] * a + 127) / 255);
        }
      }
    }
    return result;
  }
};

}  // namespace

void register_image_blend(Registry& registry) {
  registry.add({
      .name = "image.blend",
      .help = "frame = frame (1 - alpha) + generated alpha inside generated_roi (clipped to the "
              "frame), as a new image; the original goes to 'input_frame'. Without 'generated' "
              "the frame passes unchanged (and 'input_frame' shares its pixels).",
      .params = {},
      .info =
          [](const Params&) {
            // The patch is there only when gaze.redirect changed something.
            return StageInfo{.reads = {"frame"},
                             .writes = {"frame", "input_frame"},
                             .optional_reads = {"generated", "generated_mask", "generated_roi"}};
          },
      .make = [](const Params&) -> std::unique_ptr<Stage> {
        return std::make_unique<ImageBlend>();
      },
      .make_source = {},
  });
}

}  // namespace micromodels::vision
