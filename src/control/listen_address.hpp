// Where the control endpoint listens: "ADDR:PORT" parsed, and whether it is loopback only.
#pragma once

#include <string>
#include <string_view>

namespace micromodels::detail {

struct ListenAddress {
  std::string host;  // as given, without brackets: "127.0.0.1", "::1", "0.0.0.0", "localhost"
  int port = 0;      // 0: any free port
  bool loopback = false;
};

/// "127.0.0.1:8080", "[::1]:0", "0.0.0.0:9000", "localhost:0", or a bare "PORT" (127.0.0.1).
/// Throws std::invalid_argument naming the text and the expected form.
[[nodiscard]] ListenAddress parse_listen_address(std::string_view text);

/// Binds a socket to the address and closes it again: throws std::runtime_error when that is
/// not possible now (the port is in use, the address is not this machine's), so that a run can
/// refuse before it builds its stages rather than after.
void probe_listen_address(const ListenAddress& address);

/// What to do when binding failed with `error` (an errno): "port 0 picks a free one" for a
/// port in use, an address of this machine for one that is not.
[[nodiscard]] std::string listen_advice(int error);

/// "http://HOST:PORT", with IPv6 hosts in brackets.
[[nodiscard]] std::string http_url(const std::string& host, int port);

}  // namespace micromodels::detail
