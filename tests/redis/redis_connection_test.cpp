// A connection authenticates whenever it is opened: AUTH with the password (and the ACL user),
// else PING. What a wrong or missing password and a command the ACL denies are told, and that
// the password is in no message. In process, against a redis-server of the test's own with an
// ACL file, so that the sanitizer builds run it too.
#include <functional>

#include "micromodels/redis.hpp"
#include "redis_connection.hpp"
#include "redis_test_support.hpp"

namespace micromodels {
namespace {

using namespace redis_testing;

class RedisConnectionTest : public RedisTest {
 protected:
  void SetUp() override {
    RedisTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    write_text(dir_ / "users.acl",
               "user default on >default-Pw1 ~* &* +@all\n"
               "user reader on >reader-Pw2 ~mm:* -@all +ping +get\n");
    const int port = free_loopback_port();
    server_ = std::make_unique<Daemon>(
        dir_, "redis",
        std::vector<std::string>{"redis-server", "--port", std::to_string(port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no", "--aclfile",
                                 (dir_ / "users.acl").string()},
        port);
  }

  [[nodiscard]] detail::RedisUrl url(const std::string& user, const std::string& password) const {
    return {.host = "127.0.0.1", .port = server_->port(), .user = user, .password = password};
  }

  // Opening the connection throws BrokerError(refused) whose message has `fragment`, and no
  // password.
  void expect_refused(const detail::RedisUrl& to, const std::string& fragment) {
    try {
      detail::Connection conn(to);
      ADD_FAILURE() << "connected as '" << to.user << "'";
    } catch (const BrokerError& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.kind(), BrokerError::Kind::refused) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << what;
      EXPECT_EQ(what.find("-Pw"), std::string::npos) << "shows a password: " << what;
      EXPECT_EQ(what.find("wrong-one"), std::string::npos) << "shows a password: " << what;
    }
  }

  std::unique_ptr<Daemon> server_;
};

TEST_F(RedisConnectionTest, AuthenticatesTheDefaultUserAndAnAclUser) {
  detail::Connection admin(url("", "default-Pw1"));
  EXPECT_EQ(detail::text(admin.command({"SET", "mm:k", "v"}).get()), "OK");
  detail::Connection reader(url("reader", "reader-Pw2"));
  EXPECT_EQ(detail::text(reader.command({"GET", "mm:k"}).get()), "v");
}

TEST_F(RedisConnectionTest, AWrongOrMissingPasswordIsRefusedSayingWhatToSet) {
  expect_refused(url("", "wrong-one"), "refused the password of the default user (WRONGPASS");
  expect_refused(url("reader", "default-Pw1"), "refused the password of user 'reader' (WRONGPASS");
  expect_refused(url("", ""), "requires a password (NOAUTH");
  expect_refused(url("", ""), "set MICROMODELS_REDIS_PASSWORD, or MICROMODELS_REDIS_PASSWORD_FILE");
}

TEST_F(RedisConnectionTest, ACommandOrKeyTheAclDeniesIsRefusedNamingWhatToGrant) {
  detail::Connection reader(url("reader", "reader-Pw2"));
  const auto expect_denied = [&](const std::function<void()>& send, const std::string& fragment) {
    try {
      send();
      ADD_FAILURE() << "not refused: " << fragment;
    } catch (const BrokerError& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.kind(), BrokerError::Kind::refused) << what;
      EXPECT_NE(what.find("refused a command of user 'reader' (NOPERM"), std::string::npos) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << what;
      EXPECT_NE(what.find("deploy/redis/users.acl"), std::string::npos) << what;
    }
  };
  expect_denied([&] { (void)reader.command({"XADD", "mm:s", "*", "f", "v"}); }, "'xadd'");
  expect_denied([&] { (void)reader.command({"GET", "other"}); }, "keys");
  // Pipelined: the denied reply throws when read, in its place.
  reader.append({"GET", "mm:k"});
  reader.append({"DEL", "mm:k"});
  reader.send();
  EXPECT_FALSE(detail::is_error(reader.read().get()));
  expect_denied([&] { (void)reader.read(); }, "'del'");
}

}  // namespace
}  // namespace micromodels
