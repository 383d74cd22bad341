// An image stored once where every process finds it, and the small reference that hops carry in
// its place: the reference's format, the stored bytes (raw, PNG or JPEG) and their content check.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "micromodels/packet.hpp"

namespace micromodels::detail {

/// How images travel: raw pixels, or compressed (8-bit, 1 or 3 channels; others stay raw).
struct WireImages {
  enum class Kind : std::uint8_t { raw, png, jpeg };
  Kind kind = Kind::raw;
  int jpeg_quality = 90;
};

/// Where an image's bytes are and what they are. Encoded (`encode_ref`):
///
///   "ir"  u8 format (1)  u8 encoding (0 raw, 1 png, 2 jpeg)  u8 depth  u8 channels
///   i32 width  i32 height  u64 size (stored bytes)  u64 check (content_check of them)  key
///
/// Integers are little-endian; the key takes the rest (about 70 bytes in all).
struct ImageRef {
  std::string key{};
  WireImages::Kind encoding = WireImages::Kind::raw;
  Depth depth = Depth::u8;
  int channels = 0;
  int width = 0;
  int height = 0;
  std::uint64_t size = 0;
  std::uint64_t check = 0;
};

[[nodiscard]] std::string encode_ref(const ImageRef& ref);
/// Throws CodecError naming what is wrong.
[[nodiscard]] ImageRef decode_ref(std::span<const std::byte> bytes);

/// A 64-bit hash of the stored bytes, to catch a reference that meets other bytes than it was
/// made for (a key reused, a value changed). Not cryptographic.
[[nodiscard]] std::uint64_t content_check(std::span<const std::byte> bytes) noexcept;

/// The bytes that stand for `image` on the wire: compressed as `images` says when it can be (8-bit,
/// 1 or 3 channels, with the build's OpenCV), else raw; `encoding` says which.
struct PackedImage {
  Buffer bytes{};
  WireImages::Kind encoding = WireImages::Kind::raw;
};
[[nodiscard]] PackedImage pack_image(const Image& image, const WireImages& images);
/// A compressed image back to pixels. Throws CodecError (`what` names it in messages).
[[nodiscard]] Image unpack_compressed(std::span<const std::byte> bytes, std::string_view what);
/// Stored bytes back to the image `ref` describes; throws CodecError when they are not the bytes
/// it was made for (size or content check).
[[nodiscard]] Image unpack_image(Buffer bytes, const ImageRef& ref);

}  // namespace micromodels::detail
