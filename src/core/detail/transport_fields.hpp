// Fields a transport adds to a packet while it crosses processes (src/wire: how an image travels,
// the image keys a hop retired). Their names start with \x01; they are not a stage's fields, and
// what shows a stage its packet's fields (Python's `packet.fields()`) leaves them out.
#pragma once

#include <string_view>

namespace micromodels::detail {

inline constexpr char kTransportFieldMark = '\x01';

[[nodiscard]] inline bool is_transport_field(std::string_view name) noexcept {
  return name.starts_with(kTransportFieldMark);
}

}  // namespace micromodels::detail
