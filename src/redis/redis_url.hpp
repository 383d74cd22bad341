// redis://host:port[/db], as the YAML `broker:` key and --broker give it.
#pragma once

#include <string>
#include <string_view>

namespace micromodels::detail {

struct RedisUrl {
  std::string host{};
  int port = 6379;
  int db = 0;
  /// "host:port" (and "/db" when not 0), for messages.
  [[nodiscard]] std::string where() const;
};

/// Throws ConfigError (key "broker") naming the bad value and the expected form.
[[nodiscard]] RedisUrl parse_redis_url(std::string_view url);

}  // namespace micromodels::detail
