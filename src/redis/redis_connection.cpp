#include "redis_connection.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "micromodels/redis.hpp"

namespace micromodels::detail {

namespace {

// How long connecting, and a reply, may take (a blocking read asks Redis for less).
constexpr timeval kTimeout{.tv_sec = 5, .tv_usec = 0};

}  // namespace

Connection::Connection(const RedisUrl& url) : url_(url), context_(nullptr, redisFree) {
  context_.reset(redisConnectWithTimeout(url.host.c_str(), url.port, kTimeout));
  if (!context_ || context_->err != 0) {
    const std::string why = context_ ? context_->errstr : "out of memory";
    // Refused: nothing listens there. Anything else (no route, a timeout, a name that does not
    // resolve): the network between here and there, or the address.
    const bool refused = why.find("refused") != std::string::npos;
    throw BrokerError(BrokerError::Kind::unreachable,
                      "cannot connect to Redis at " + url.where() + " (" + why + "): " +
                          (refused ? "start redis-server there"
                                   : "check the address, and the network from this machine to "
                                     "it (a route, a firewall)") +
                          ", or give the address of one that runs: --broker, broker= in Python, "
                          "or the pipeline's broker:");
  }
  redisSetTimeout(context_.get(), kTimeout);
  authenticate();
  if (url.db != 0) {
    const Reply reply = command({"SELECT", std::to_string(url.db)});
    if (is_error(reply.get())) {
      throw BrokerError(BrokerError::Kind::unreachable,
                        "Redis at " + url.where() + " refused database " + std::to_string(url.db) +
                            ": " + std::string(text(reply.get())) +
                            "; a Redis has databases 0 to its `databases` setting - 1 (16 by "
                            "default): use one of those in the URL's /DB");
    }
  }
}

void Connection::authenticate() {
  // AUTH when there is a password, else PING: either way the first reply says whether this is a
  // Redis that lets us in, before any thread relies on the connection.
  Args hello{"PING"};
  if (!url_.password.empty()) {
    hello =
        url_.user.empty() ? Args{"AUTH", url_.password} : Args{"AUTH", url_.user, url_.password};
  }
  Reply reply;
  try {
    reply = command(hello);
  } catch (const BrokerError& e) {
    // A server that speaks TLS only closes the connection on a plain command; a silent one is
    // the network.
    if (timed_out()) throw;
    throw BrokerError(BrokerError::Kind::unreachable,
                      std::string(e.what()) +
                          ". If that server speaks TLS only, reach it through a local stunnel "
                          "and pass its end: redis://127.0.0.1:PORT (docs/distributed.md#tls)");
  }
  if (!is_error(reply.get())) return;
  const std::string why(text(reply.get()));  // Redis never repeats the password
  const std::string who = url_.user.empty() ? "the default user" : "user '" + url_.user + "'";
  if (url_.password.empty() && !why.starts_with("NOAUTH")) {
    // LOADING (a restarted Redis reads its files; AUTH is answered meanwhile, PING is not):
    // worth waiting for, as for a lost connection.
    throw BrokerError(BrokerError::Kind::unreachable,
                      "Redis at " + url_.where() + " is not ready: " + why);
  }
  if (why.starts_with("NOAUTH")) {
    throw BrokerError(
        BrokerError::Kind::refused,
        "Redis at " + url_.where() + " requires a password (" + why +
            "): set MICROMODELS_REDIS_PASSWORD, or MICROMODELS_REDIS_PASSWORD_FILE to "
            "a file that holds it, and name the ACL user in the URL, "
            "redis://USER@host:port, unless it is the default user");
  }
  throw BrokerError(BrokerError::Kind::refused,
                    "Redis at " + url_.where() + " refused the password of " + who + " (" + why +
                        "): check MICROMODELS_REDIS_PASSWORD (or the file "
                        "MICROMODELS_REDIS_PASSWORD_FILE names) and the user in the URL");
}

bool Connection::timed_out() const {
  return context_->err == REDIS_ERR_IO &&
         std::string_view(context_->errstr) == std::strerror(EAGAIN);
}

void Connection::io_failed(const char* doing) {
  if (timed_out()) {
    throw BrokerError(BrokerError::Kind::unreachable,
                      "Redis at " + url_.where() + ": no reply to " + doing + " within " +
                          std::to_string(kTimeout.tv_sec) +
                          " s (the network to it went silent, or it is busy with a long command)");
  }
  const std::string why = context_->errstr[0] != '\0' ? context_->errstr : "connection lost";
  throw BrokerError(BrokerError::Kind::unreachable, std::string("Redis at ") + url_.where() + ": " +
                                                        doing + " failed (" + why + ")");
}

Reply Connection::command(const Args& args) {
  append(args);
  return read(args.items().empty() ? "command" : args.items()[0].c_str());
}

Reply Connection::checked(void* reply, const char* doing) {
  if (reply == nullptr) io_failed(doing);
  Reply owned(static_cast<redisReply*>(reply));
  if (!is_error(owned.get()) || !text(owned.get()).starts_with("NOPERM")) return owned;
  const std::string who = url_.user.empty() ? "the default user" : "user '" + url_.user + "'";
  throw BrokerError(
      BrokerError::Kind::refused,
      "Redis at " + url_.where() + " refused a command of " + who + " (" +
          std::string(text(owned.get())) +
          "): give the user every command and key that micromodels uses in its ACL, as "
          "deploy/redis/users.acl does (docs/distributed.md#access-control)");
}

namespace {

Reply succeeded(const Args& args, Reply reply) {
  if (is_error(reply.get())) {
    throw std::runtime_error("Redis " + args.items()[0] +
                             " failed: " + std::string(text(reply.get())));
  }
  return reply;
}

}  // namespace

Reply Connection::ok(const Args& args) { return succeeded(args, command(args)); }

void Connection::ok_all(const std::vector<Args>& commands) {
  for (const Args& args : commands) append(args);
  // Every reply is read before any error is thrown: the connection stays in step.
  std::vector<Reply> replies;
  for (const Args& args : commands) replies.push_back(read(args.items()[0].c_str()));
  for (std::size_t i = 0; i < commands.size(); ++i) succeeded(commands[i], std::move(replies[i]));
}

void Connection::append(const Args& args) {
  // hiredis's form of a command: pointers to the arguments and their lengths.
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const std::string& item : args.items()) {
    argv.push_back(item.data());
    lengths.push_back(item.size());
  }
  if (redisAppendCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(),
                             lengths.data()) != REDIS_OK) {
    io_failed("append");
  }
}

Reply Connection::read(const char* doing) {
  void* reply = nullptr;
  if (redisGetReply(context_.get(), &reply) != REDIS_OK) reply = nullptr;
  return checked(reply, doing);
}

void Connection::send() {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(context_.get(), &done) != REDIS_OK) io_failed("write");
  }
}

bool is_error(const redisReply* reply) noexcept {
  return reply != nullptr && reply->type == REDIS_REPLY_ERROR;
}

std::string_view text(const redisReply* reply) noexcept {
  if (reply == nullptr) return {};
  if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
      reply->type == REDIS_REPLY_ERROR) {
    return {reply->str, reply->len};
  }
  return {};
}

long long integer(const redisReply* reply) noexcept {
  if (reply == nullptr) return 0;
  if (reply->type == REDIS_REPLY_INTEGER) return reply->integer;
  if (reply->type == REDIS_REPLY_STRING) return std::strtoll(reply->str, nullptr, 10);
  return 0;
}

const redisReply* at(const redisReply* reply, std::size_t i) noexcept {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || i >= reply->elements) return nullptr;
  return reply->element[i];
}

std::size_t size(const redisReply* reply) noexcept {
  return reply != nullptr && reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
}

const redisReply* field(const redisReply* reply, std::string_view key) noexcept {
  for (std::size_t i = 0; i + 1 < size(reply); i += 2) {
    if (text(at(reply, i)) == key) return at(reply, i + 1);
  }
  return nullptr;
}

const redisReply* group(const redisReply* groups, std::string_view name) noexcept {
  for (std::size_t i = 0; i < size(groups); ++i) {
    if (text(field(at(groups, i), "name")) == name) return at(groups, i);
  }
  return nullptr;
}

std::string_view memory_refusal(const redisReply* reply) noexcept {
  std::string_view why = is_error(reply) ? text(reply) : std::string_view{};
  constexpr std::string_view kBecause = "because of: ";
  const auto at = why.find(kBecause);
  if (at != std::string_view::npos) why.remove_prefix(at + kBecause.size());
  return why.starts_with("OOM") ? why : std::string_view{};
}

}  // namespace micromodels::detail
