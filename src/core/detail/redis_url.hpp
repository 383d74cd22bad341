// redis://[user@]host:port[/db], as the YAML `broker:` key and --broker give it.
#pragma once

#include <string>
#include <string_view>

namespace micromodels::detail {

struct RedisUrl {
  std::string host{};
  int port = 6379;
  int db = 0;
  std::string user{};      // the ACL user; empty: Redis's default user
  std::string password{};  // never from the URL (redis_password.hpp); never in a message
  /// "host:port" (and "/db" when not 0), for messages.
  [[nodiscard]] std::string where() const;
};

/// Throws ConfigError (key "broker") naming the bad value and the expected form. A password in
/// the URL is refused (and hidden in the message), as is rediss://: see docs/distributed.md.
[[nodiscard]] RedisUrl parse_redis_url(std::string_view url);

}  // namespace micromodels::detail
