// Where a process finds its Redis password: MICROMODELS_REDIS_PASSWORD or the file that
// MICROMODELS_REDIS_PASSWORD_FILE names; what a wrong setting is told.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <unistd.h>

#include "micromodels/pipeline.hpp"
#include "redis_password.hpp"

namespace micromodels::detail {
namespace {

namespace fs = std::filesystem;

class RedisPasswordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv(kPasswordVariable);
    ::unsetenv(kPasswordFileVariable);
  }
  void TearDown() override { SetUp(); }
  static fs::path file_with(const std::string& text) {
    const fs::path path = fs::temp_directory_path() /
                          ("micromodels_password_" + std::to_string(::getpid()));
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

TEST_F(RedisPasswordTest, NoneSetMeansNoPassword) {
  EXPECT_EQ(with_password(parse_redis_url("redis://h:1")).password, "");
}

TEST_F(RedisPasswordTest, FromTheVariable) {
  ::setenv(kPasswordVariable, "p4ss word", 1);
  const RedisUrl url = with_password(parse_redis_url("redis://app@h:1"));
  EXPECT_EQ(url.password, "p4ss word");
  EXPECT_EQ(url.user, "app");
}

TEST_F(RedisPasswordTest, FromAFileWithoutItsTrailingNewline) {
  const fs::path path = file_with("from-file\n");
  ::setenv(kPasswordFileVariable, path.c_str(), 1);
  EXPECT_EQ(with_password(parse_redis_url("redis://h:1")).password, "from-file");
  std::ofstream(path, std::ios::binary) << "crlf\r\n";
  EXPECT_EQ(with_password(parse_redis_url("redis://h:1")).password, "crlf");
  std::ofstream(path, std::ios::binary) << "none";
  EXPECT_EQ(with_password(parse_redis_url("redis://h:1")).password, "none");
  fs::remove(path);
}

void expect_config_error(const std::string& fragment, const std::string& key) {
  try {
    (void)with_password(parse_redis_url("redis://app@h:1"));
    ADD_FAILURE() << "accepted; wanted an error with: " << fragment;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_EQ(e.key(), key);
  }
}

TEST_F(RedisPasswordTest, WrongSettingsAreToldWhatToDo) {
  // A user needs a password.
  expect_config_error("broker user 'app' needs a password: set MICROMODELS_REDIS_PASSWORD", "broker");
  // A file that is not there, or empty.
  ::setenv(kPasswordFileVariable, "/nonexistent/redis-password", 1);
  expect_config_error("MICROMODELS_REDIS_PASSWORD_FILE=/nonexistent/redis-password: cannot read",
                      kPasswordFileVariable);
  const fs::path empty = file_with("\n");
  ::setenv(kPasswordFileVariable, empty.c_str(), 1);
  expect_config_error("the file is empty", kPasswordFileVariable);
  fs::remove(empty);
  // Both: which one would win is not guessed.
  ::setenv(kPasswordVariable, "x", 1);
  expect_config_error("set one of them", kPasswordVariable);
}

}  // namespace
}  // namespace micromodels::detail
