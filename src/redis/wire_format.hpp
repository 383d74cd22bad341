// What one stream entry holds, and which fields a hop carries.
//
// An entry is a flat field list: r (run id), s (stream), q (seq), k ("p" packet or "t" tombstone:
// the packet was filtered out or dead-lettered, so ordered stages after it must not wait for it)
// and p (the packet, encode_packet of the fields the hop carries).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "micromodels/packet.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/stage.hpp"
#include "redis_connection.hpp"

namespace micromodels::detail {

struct WireEntry {
  std::string id{};   // the Redis entry id
  std::string key{};  // the stream it was read from
  std::string run{};
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
  bool has_position = false;  // s and q were present and numbers
  bool tombstone = false;
  std::string payload{};
  std::string malformed{};  // why the entry cannot be used, when it cannot
};

/// `entry` is [id, [field, value, ...]] as XREADGROUP and XAUTOCLAIM return it.
[[nodiscard]] WireEntry parse_entry(const redisReply* entry, std::string key);

/// XADD key * r run s stream q seq k p|t [p payload].
[[nodiscard]] Args xadd_args(std::string_view key, std::string_view run, std::uint32_t stream,
                             std::uint64_t seq, const std::string* payload);

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

/// What each hop carries. The hop into stage i carries the fields stage i reads (`reads` and
/// `optional_reads`) and those every stage downstream of it reads, and nothing else; every
/// field (nullopt) when one of them has `reads_all`. `children[i]` are the stages that stage i
/// feeds (no cycles). Fields a stage writes need no room here: they are added after the hop.
[[nodiscard]] std::vector<std::optional<std::set<std::string>>> hop_fields(
    const std::vector<StageInfo>& infos, const std::vector<std::vector<std::size_t>>& children);

/// The packet as it travels one hop: only the fields named in `keep` (every field when `keep`
/// is nullopt). Compressed images become a Buffer of the same name plus a marker field, so
/// that the receiver knows what to decode.
[[nodiscard]] std::string encode_for_hop(const Packet& packet,
                                         const std::optional<std::set<std::string>>& keep,
                                         const WireImages& images = {});

/// decode_packet, then compressed images back to Image. Throws CodecError.
[[nodiscard]] Packet decode_hop(const std::string& payload);

}  // namespace micromodels::detail
