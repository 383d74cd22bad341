// A packet as it travels one hop: only the fields the stages after it read, and images raw or
// compressed as `wire:` says.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "micromodels/packet.hpp"
#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

/// How images travel: raw pixels, or compressed (8-bit, 1 or 3 channels; others stay raw).
struct WireImages {
  enum class Kind { raw, png, jpeg };
  Kind kind = Kind::raw;
  int jpeg_quality = 90;
};

/// Parses "raw", "png", "jpeg"; throws ConfigError naming the value and where it came from
/// (`kind_from`, `quality_from`). PNG and JPEG need the build's OpenCV (with the vision
/// stages); without it they are a ConfigError too.
[[nodiscard]] WireImages parse_wire_images(const std::string& kind, int jpeg_quality,
                                           std::string_view kind_from = "--wire-images",
                                           std::string_view quality_from = "--jpeg-quality");

/// The encoding a process uses: `--wire-images` / `--jpeg-quality` when given (non-empty,
/// non-zero), else the pipeline file's `wire:`. Errors name the option or the file's key.
[[nodiscard]] WireImages wire_images_for(const std::string& images, int jpeg_quality,
                                         const Pipeline& pipeline);

/// The packet as it travels one hop: only the fields named in `keep` (every field when `keep`
/// is nullopt; PlanStage::carried says which). Compressed images become a Buffer of the same
/// name plus a marker field, so that the receiver knows what to decode.
[[nodiscard]] std::string encode_for_hop(const Packet& packet,
                                         const std::optional<std::set<std::string>>& keep,
                                         const WireImages& images = {});

/// decode_packet, then compressed images back to Image. Throws CodecError.
[[nodiscard]] Packet decode_hop(std::string_view payload);

}  // namespace micromodels::detail
