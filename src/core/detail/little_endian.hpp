// Fixed-width integers as little-endian bytes, the least significant first: the packet codec's
// numbers, and the headers of what travels with packets (a Redis entry, an image reference).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace micromodels::detail {

/// Appends the bytes of `value` to `out`, a std::string or a std::vector<std::byte>.
template <class T, class Out>
void put_le(Out& out, T value) {
  static_assert(std::is_integral_v<T>);
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<typename Out::value_type>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xFFu));
  }
}

/// The `T` whose sizeof(T) bytes start at `bytes` (chars or std::bytes); the caller checked that
/// they are there.
template <class T, class Byte>
T get_le(const Byte* bytes) {
  static_assert(std::is_integral_v<T>);
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    value |= std::uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  }
  return static_cast<T>(value);
}

}  // namespace micromodels::detail
