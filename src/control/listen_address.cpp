#include "listen_address.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace micromodels::detail {

namespace {

[[noreturn]] void refuse(std::string_view text, const std::string& why) {
  throw std::invalid_argument("--listen '" + std::string(text) + "': " + why +
                              " (expected ADDR:PORT, e.g. 127.0.0.1:0, [::1]:9464, 0.0.0.0:9464)");
}

// Only addresses that cannot be reached from another machine count: the IPv4 loopback network,
// ::1 and the name "localhost". Any other name may resolve to anything.
bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6) != 0;
  return false;
}

}  // namespace

ListenAddress parse_listen_address(std::string_view text) {
  ListenAddress address;
  std::string_view port_text;
  if (text.empty()) refuse(text, "empty");
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      refuse(text, "an IPv6 address is written [ADDR]:PORT");
    }
    address.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon == std::string_view::npos) {
    address.host = "127.0.0.1";
    port_text = text;
  } else {
    if (text.find(':') != colon) refuse(text, "an IPv6 address is written [ADDR]:PORT");
    address.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (address.host.empty()) refuse(text, "no address before the port");
  int port = -1;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port < 0 ||
      port > 65535) {
    refuse(text, "the port must be a number from 0 to 65535 (0: any free port)");
  }
  address.port = port;
  address.loopback = is_loopback(address.host);
  return address;
}

void probe_listen_address(const ListenAddress& address) {
  // Port 0 too: any free port collides with nothing, but the address may not be this machine's.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (const int error = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found);
      error != 0) {
    throw std::runtime_error("cannot listen on " + address.host + ":" + port + ": " +
                             ::gai_strerror(error));
  }
  std::string reason = "no usable address";
  int failure = 0;
  bool bound = false;
  for (const addrinfo* a = found; a != nullptr && !bound; a = a->ai_next) {
    const int socket = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (socket < 0) continue;
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);  // as the server does
    bound = ::bind(socket, a->ai_addr, a->ai_addrlen) == 0;
    if (!bound) {
      failure = errno;
      reason = std::strerror(failure);
    }
    ::close(socket);
  }
  ::freeaddrinfo(found);
  if (!bound) {
    throw std::runtime_error("cannot listen on " + http_url(address.host, address.port).substr(7) +
                             ": " + reason + listen_advice(failure));
  }
}

std::string listen_advice(int error) {
  switch (error) {
    case EADDRINUSE:
      return " (another process listens on that port: pick another; port 0 picks a free one)";
    case EADDRNOTAVAIL:
      return " (that address is not one of this machine's: use 127.0.0.1, 0.0.0.0 for every "
             "interface, or an address `ip addr` lists)";
    case EACCES:
      return " (a port below 1024 needs privileges: use a higher one; port 0 picks a free one)";
    default:
      return "";
  }
}

std::string http_url(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return "http://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace micromodels::detail
