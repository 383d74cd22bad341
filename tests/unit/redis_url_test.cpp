// redis://[user@]host:port[/db]: what is accepted, and what a wrong value is told.
#include "core/detail/redis_url.hpp"

#include <gtest/gtest.h>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {
namespace {

TEST(RedisUrl, ParsesHostPortAndDatabase) {
  const RedisUrl url = parse_redis_url("redis://10.0.0.5:6380/2");
  EXPECT_EQ(url.host, "10.0.0.5");
  EXPECT_EQ(url.port, 6380);
  EXPECT_EQ(url.db, 2);
  EXPECT_EQ(url.where(), "10.0.0.5:6380/2");
}

TEST(RedisUrl, DefaultsToPort6379AndDatabase0) {
  const RedisUrl url = parse_redis_url("redis://redis.local");
  EXPECT_EQ(url.host, "redis.local");
  EXPECT_EQ(url.port, 6379);
  EXPECT_EQ(url.db, 0);
  EXPECT_EQ(parse_redis_url("redis://h:1/").db, 0);
}

void expect_rejected(const std::string& url, const std::string& fragment) {
  try {
    (void)parse_redis_url(url);
    ADD_FAILURE() << url << " was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'" + url + "'"), std::string::npos) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
    EXPECT_NE(what.find("redis://host:port"), std::string::npos) << what;  // says what to write
    EXPECT_EQ(e.key(), "broker");
  }
}

TEST(RedisUrl, RejectsWhatItCannotUseNamingTheValue) {
  expect_rejected("redis://:6379", "no host");
  expect_rejected("redis://h:port", "port 'port'");
  expect_rejected("redis://h:0", "port '0'");
  expect_rejected("redis://h:70000", "port '70000'");
  expect_rejected("redis://h:6379/x", "database 'x'");
  expect_rejected("http://h:6379", "not a redis:// URL");
  expect_rejected("redis://@h:6379", "no user");
  expect_rejected("rediss://h:6379", "stunnel");
}

TEST(RedisUrl, TakesAnIpv6AddressInBrackets) {
  const RedisUrl url = parse_redis_url("redis://[::1]:6411/2");
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 6411);
  EXPECT_EQ(url.db, 2);
  EXPECT_EQ(url.where(), "[::1]:6411/2");
  EXPECT_EQ(parse_redis_url("redis://[fe80::1]").port, 6379);
  expect_rejected("redis://[::1", "no ']'");
  expect_rejected("redis://[::1]6379", "':PORT' expected after ']'");
  expect_rejected("redis://[]:6379", "no host");
  expect_rejected("redis://h:", "port ''");
}

TEST(RedisUrl, TakesAnAclUserFromTheUrl) {
  const RedisUrl url = parse_redis_url("redis://pipeline-eye@10.0.0.5:6380/1");
  EXPECT_EQ(url.user, "pipeline-eye");
  EXPECT_EQ(url.host, "10.0.0.5");
  EXPECT_EQ(url.port, 6380);
  EXPECT_EQ(url.db, 1);
  EXPECT_EQ(url.password, "");  // never from the URL
  EXPECT_EQ(url.where(), "10.0.0.5:6380/1");
}

// A password in the URL is refused, and the message that repeats the URL hides it.
TEST(RedisUrl, RefusesAPasswordInTheUrlWithoutShowingIt) {
  for (const std::string url : {"redis://user:s3cret@h:6379", "redis://:s3cret@h:6379/2",
                                "redis://user:s3c@ret/x@h:6379"}) {
    try {
      (void)parse_redis_url(url);
      ADD_FAILURE() << url << " was accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find("s3c"), std::string::npos) << what;
      EXPECT_NE(what.find(":***@h:6379"), std::string::npos) << what;
      EXPECT_NE(what.find("MICROMODELS_REDIS_PASSWORD_FILE"), std::string::npos) << what;
      EXPECT_EQ(e.key(), "broker");
    }
  }
}

}  // namespace
}  // namespace micromodels::detail
