// The image keys a frame's packet no longer refers to, carried with it to the sinks. A key is
// "retired" on a hop when no field the hop carries refers to it any more: a stage replaced the
// image (a resize writing a new `frame`), or no stage after the hop reads its field (the
// eye-contact pipeline's patches after `image.blend`). The sinks' inlet hands them to the image
// store with the keys their packets refer to, so that they go with the frame once every sink has
// settled it (ImageStore::settled) rather than a TTL after their last hop.
//
// On the wire, a hop's entry holds them in one field, kRetired: a Buffer of keys, each a u16
// length (little-endian) and its bytes; absent when there is none. Between an inlet and the
// outlets after its stage, the packet's retired field also holds the keys of the references the
// packet arrived with, since the stage may replace or drop any of them: the outlet writes on
// those that no field it carries refers to. A join's parts each hold theirs under a field of their
// own (kRetired, then kRetired + ":1" for input 1, ...): the engine merges the parts by field
// name, so the merged packet keeps every part's keys.
#pragma once

#include <cstddef>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/detail/transport_fields.hpp"
#include "micromodels/packet.hpp"

namespace micromodels::detail {

inline constexpr std::string_view kRetired = "\x01retired";
static_assert(kRetired.front() == kTransportFieldMark);

/// A field of retired keys (any input's); never a field a stage reads.
[[nodiscard]] bool is_retired_field(std::string_view name) noexcept;

/// The list's bytes (keys longer than a u16 are left out: they go by their TTL) and back.
/// decode_keys throws CodecError naming what is wrong.
[[nodiscard]] Buffer encode_keys(const std::set<std::string>& keys);
[[nodiscard]] std::vector<std::string> decode_keys(std::span<const std::byte> bytes);

/// Every key of the packet's retired fields. Throws CodecError for a field that is not a list.
[[nodiscard]] std::set<std::string> held_keys(const Packet& packet);

/// At the inlet of a stage that is not a sink: the packet's retired keys and `referred` (the keys
/// of the references it arrived with) go into one field, its input's, for the outlets after the
/// stage.
void hold_keys(Packet& packet, std::size_t input, const std::vector<std::string>& referred);

/// At a sink's inlet: the retired keys, taken out of the packet (a sink never sees the field).
[[nodiscard]] std::vector<std::string> take_retired(Packet& packet);

}  // namespace micromodels::detail
