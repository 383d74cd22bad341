// A versioned binary encoding of packets, for brokers that cross processes.
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "micromodels/packet.hpp"

namespace micromodels {

/// Thrown by decode_packet for truncated, oversized or corrupt input; never undefined behaviour.
class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Limits that bound what decode_packet allocates, whatever the input claims.
struct CodecLimits {
  std::size_t max_fields = 1024;
  std::size_t max_bytes = std::size_t{1} << 30;  // any single field
  std::size_t max_dims = 16;
};

/// Format version written by encode_packet; decode_packet reads this version.
inline constexpr std::uint8_t kPacketCodecVersion = 2;  // 2: capture_ns

///   std::vector<std::byte> wire = encode_packet(packet);
///   Packet back = decode_packet(wire);   // equal fields, new buffers
[[nodiscard]] std::vector<std::byte> encode_packet(const Packet& packet);
[[nodiscard]] Packet decode_packet(std::span<const std::byte> bytes, const CodecLimits& limits = {});

}  // namespace micromodels
