// The password a process gives Redis: from the environment, never from the command line or the
// URL, so that it shows in no process list, shell history, log or message.
#pragma once

#include "core/detail/redis_url.hpp"

namespace micromodels::detail {

inline constexpr const char* kPasswordVariable = "MICROMODELS_REDIS_PASSWORD";
/// Names a file that holds the password (a Kubernetes Secret mounted as a file); one trailing
/// newline is not part of it.
inline constexpr const char* kPasswordFileVariable = "MICROMODELS_REDIS_PASSWORD_FILE";

/// `url` with its password from MICROMODELS_REDIS_PASSWORD or MICROMODELS_REDIS_PASSWORD_FILE
/// (none: no AUTH). Throws ConfigError when both are set, the file cannot be read or is empty, or
/// the URL names a user without a password.
[[nodiscard]] RedisUrl with_password(RedisUrl url);

}  // namespace micromodels::detail
