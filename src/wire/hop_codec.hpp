// A packet as it travels one hop: only the fields the stages after it read, and images raw,
// compressed or by reference as `wire:` says.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "image_ref.hpp"
#include "micromodels/packet.hpp"
#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

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

/// Where a hop's images go when they travel by reference: a transport's image store.
class ImageRefs {
 public:
  virtual ~ImageRefs() = default;
  /// The reference of `image`: the one it arrived with when its pixels did not change, else a
  /// new one, its pixels stored now (`stored` += the bytes stored).
  virtual ImageRef reference(const Image& image, std::uint64_t& stored) = 0;
  /// A hop carries `ref` on, its pixels never fetched here.
  virtual void carry(const ImageRef& ref) = 0;
  /// Whether a frame's keys go once its sinks have it: hops then carry the keys they retire on
  /// to the sinks (retired_keys.hpp).
  [[nodiscard]] virtual bool retires() const { return false; }
};

/// A packet's capture time across processes: `Packet::capture_ns` is on the capture clock
/// (this process's monotonic clock), which another process does not share; a hop carries it as the
/// wall-clock time its age says (capture_to_wall) and the receiver turns that back into its own
/// capture clock (capture_from_wall, an age below 0 clamped to 0). Ages across machines are then
/// as right as their wall clocks agree (NTP: a few milliseconds). 0 (not stamped) stays 0.
[[nodiscard]] std::int64_t capture_to_wall(std::int64_t capture_ns);
[[nodiscard]] std::int64_t capture_from_wall(std::int64_t wall_ns);

/// The packet as it travels one hop (its capture time as wall-clock time): only the fields named in
/// `keep` (every field when `keep` is nullopt; PlanStage::carried says which). With `refs`, images
/// travel as references (a Buffer field of the same name holding encode_ref, and a marker field);
/// without, compressed images become a Buffer of the same name plus a marker, so that the receiver
/// knows what to decode. An image that arrived by reference and was not fetched goes on as that
/// reference. When `refs` retires keys, the hop also carries the packet's retired keys that no
/// field it carries refers to (retired_keys.hpp); retired fields never travel as ordinary fields.
/// `stored` (when given) += the image bytes `refs` stored for this hop.
[[nodiscard]] std::string encode_for_hop(const Packet& packet,
                                         const std::optional<std::set<std::string>>& keep,
                                         const WireImages& images = {}, ImageRefs* refs = nullptr,
                                         std::uint64_t* stored = nullptr);

/// decode_packet, the capture time back to this machine's capture clock, then compressed
/// images back to Image. Images that came by reference stay
/// references (see `references`): only a process that reads their pixels fetches them.
/// Throws CodecError (for a retired list that does not decode too).
[[nodiscard]] Packet decode_hop(std::string_view payload);

/// The images of `packet` that are still references: (field name, reference). Throws
/// CodecError for a reference that does not decode.
[[nodiscard]] std::vector<std::pair<std::string, ImageRef>> references(const Packet& packet);
/// Puts the fetched pixels of field `name` in place of its reference.
void resolve(Packet& packet, const std::string& name, Image image);

}  // namespace micromodels::detail
