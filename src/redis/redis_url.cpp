#include "redis_url.hpp"

#include <charconv>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

namespace {

[[noreturn]] void bad(std::string_view url, const std::string& why) {
  throw ConfigError({}, "broker",
                    "broker '" + std::string(url) + "': " + why +
                        "; expected redis://host:port[/db], e.g. redis://127.0.0.1:6379");
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

}  // namespace

std::string RedisUrl::where() const {
  std::string text = host + ":" + std::to_string(port);
  if (db != 0) text += "/" + std::to_string(db);
  return text;
}

RedisUrl parse_redis_url(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) bad(url, "not a redis:// URL");
  std::string_view rest = url.substr(kScheme.size());
  RedisUrl parsed;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) parsed.db = number(url, db, 0, 65535, "database");
    rest = rest.substr(0, slash);
  }
  if (rest.find('@') != std::string_view::npos) bad(url, "passwords in the URL are not supported");
  if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    parsed.port = number(url, rest.substr(colon + 1), 1, 65535, "port");
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) bad(url, "no host");
  parsed.host = std::string(rest);
  return parsed;
}

}  // namespace micromodels::detail
