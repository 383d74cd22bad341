#include "redis_url.hpp"

#include <charconv>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

namespace {

[[noreturn]] void bad(std::string_view url, const std::string& why) {
  throw ConfigError({}, "broker",
                    "broker '" + std::string(url) + "': " + why +
                        "; expected redis://host:port[/db] (redis://USER@host:port[/db] for an ACL "
                        "user), e.g. redis://127.0.0.1:6379");
}

int number(std::string_view url, std::string_view text, int min, int max, const char* what) {
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    bad(url, std::string(what) + " '" + std::string(text) + "' is not a number from " +
                 std::to_string(min) + " to " + std::to_string(max));
  }
  return value;
}

// `url` with the password of scheme://user:PASSWORD@host replaced by ***, for messages.
std::string without_password(std::string_view url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  const auto colon = url.find(':', scheme + 3);
  if (colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

}  // namespace

std::string RedisUrl::where() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string text = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  if (db != 0) text += "/" + std::to_string(db);
  return text;
}

RedisUrl parse_redis_url(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (const std::string shown = without_password(url); shown != url) {
    bad(shown,
        "a password in the URL would show in process lists and logs; put it in "
        "MICROMODELS_REDIS_PASSWORD, or in a file named by "
        "MICROMODELS_REDIS_PASSWORD_FILE, and keep only the user in the URL");
  }
  if (url.starts_with("rediss://")) {
    bad(url,
        "TLS is reached through a tunnel: run stunnel in client mode on this machine and "
        "pass its local end, redis://127.0.0.1:PORT (docs/distributed.md#tls)");
  }
  if (!url.starts_with(kScheme)) bad(url, "not a redis:// URL");
  std::string_view rest = url.substr(kScheme.size());
  RedisUrl parsed;
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view user = rest.substr(0, at);
    if (user.empty()) bad(url, "no user before '@'");
    parsed.user = std::string(user);
    rest = rest.substr(at + 1);
  }
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) parsed.db = number(url, db, 0, 65535, "database");
    rest = rest.substr(0, slash);
  }
  // host[:port], or [IPv6 address][:port]
  const bool v6 = rest.starts_with('[');
  const auto close = v6 ? rest.find(']') : 0;
  if (close == std::string_view::npos) bad(url, "no ']' after the IPv6 address");
  if (const auto colon = rest.find(':', close); colon != std::string_view::npos) {
    parsed.port = number(url, rest.substr(colon + 1), 1, 65535, "port");
    rest = rest.substr(0, colon);
  }
  if (v6) {
    if (close + 1 != rest.size()) bad(url, "':PORT' expected after ']'");
    rest = rest.substr(1, close - 1);
  }
  if (rest.empty()) bad(url, "no host");
  parsed.host = std::string(rest);
  return parsed;
}

}  // namespace micromodels::detail
