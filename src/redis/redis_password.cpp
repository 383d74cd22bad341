#include "redis_password.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

namespace {

std::string variable(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string read_password_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError({}, kPasswordFileVariable,
                      std::string(kPasswordFileVariable) + "=" + path + ": cannot read the file (" +
                          std::strerror(errno) +
                          "); point it at the file that holds the Redis password");
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string password = text.str();
  if (password.ends_with("\r\n")) {
    password.resize(password.size() - 2);
  } else if (password.ends_with('\n')) {
    password.pop_back();
  }
  if (password.empty()) {
    throw ConfigError({}, kPasswordFileVariable,
                      std::string(kPasswordFileVariable) + "=" + path +
                          ": the file is empty; write the Redis password into it");
  }
  return password;
}

}  // namespace

RedisUrl with_password(RedisUrl url) {
  const std::string direct = variable(kPasswordVariable);
  const std::string file = variable(kPasswordFileVariable);
  if (!direct.empty() && !file.empty()) {
    throw ConfigError({}, kPasswordVariable,
                      std::string("both ") + kPasswordVariable + " and " + kPasswordFileVariable +
                          " are set; set one of them");
  }
  url.password = file.empty() ? direct : read_password_file(file);
  if (!url.user.empty() && url.password.empty()) {
    throw ConfigError({}, "broker",
                      "broker user '" + url.user + "' needs a password: set " + kPasswordVariable +
                          ", or " + kPasswordFileVariable + " to a file that holds it");
  }
  return url;
}

}  // namespace micromodels::detail
