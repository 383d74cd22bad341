#include "retired_keys.hpp"

#include <limits>
#include <utility>

#include "core/detail/little_endian.hpp"
#include "micromodels/packet_codec.hpp"

namespace micromodels::detail {

namespace {

std::string field_for(std::size_t input) {
  return input == 0 ? std::string(kRetired) : std::string(kRetired) + ":" + std::to_string(input);
}

void drop_retired_fields(Packet& packet) {
  std::erase_if(packet.fields, [](const Packet::Field& f) { return is_retired_field(f.name); });
}

}  // namespace

bool is_retired_field(std::string_view name) noexcept { return name.starts_with(kRetired); }

Buffer encode_keys(const std::set<std::string>& keys) {
  std::vector<std::byte> out;
  for (const std::string& key : keys) {
    if (key.empty() || key.size() > std::numeric_limits<std::uint16_t>::max()) continue;
    put_le(out, static_cast<std::uint16_t>(key.size()));
    const auto* bytes = reinterpret_cast<const std::byte*>(key.data());
    out.insert(out.end(), bytes, bytes + key.size());
  }
  return Buffer(std::move(out));
}

std::vector<std::string> decode_keys(std::span<const std::byte> bytes) {
  std::vector<std::string> keys;
  std::size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 2) {
      throw CodecError("retired image keys: 1 byte left at byte " + std::to_string(at) + " of " +
                       std::to_string(bytes.size()) + ", where a key's 2-byte length begins");
    }
    const auto length = get_le<std::uint16_t>(bytes.data() + at);
    at += 2;
    if (length == 0 || length > bytes.size() - at) {
      throw CodecError("retired image keys: a key of " + std::to_string(length) +
                       " bytes at byte " + std::to_string(at) + " of " +
                       std::to_string(bytes.size()) +
                       (length == 0 ? " (a key is never empty)" : " runs past the list's end"));
    }
    keys.emplace_back(reinterpret_cast<const char*>(bytes.data() + at), length);
    at += length;
  }
  return keys;
}

std::set<std::string> held_keys(const Packet& packet) {
  std::set<std::string> keys;
  for (const Packet::Field& f : packet.fields) {
    if (!is_retired_field(f.name)) continue;
    const auto* list = std::get_if<Buffer>(&f.value);
    if (list == nullptr) throw CodecError("retired image keys: field is not a list of keys");
    for (std::string& key : decode_keys(list->span())) keys.insert(std::move(key));
  }
  return keys;
}

void hold_keys(Packet& packet, std::size_t input, const std::vector<std::string>& referred) {
  std::set<std::string> keys = held_keys(packet);
  keys.insert(referred.begin(), referred.end());
  drop_retired_fields(packet);
  if (!keys.empty()) packet.set(field_for(input), encode_keys(keys));
}

std::vector<std::string> take_retired(Packet& packet) {
  const std::set<std::string> keys = held_keys(packet);
  drop_retired_fields(packet);
  return {keys.begin(), keys.end()};
}

}  // namespace micromodels::detail
