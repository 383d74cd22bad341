#include "redis_connection.hpp"

#include <cstdlib>
#include <stdexcept>

#include "micromodels/redis.hpp"

namespace micromodels::detail {

namespace {

timeval to_timeval(int ms) {
  return timeval{.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

void argv_of(const Args& args, std::vector<const char*>& argv, std::vector<std::size_t>& lengths) {
  argv.clear();
  lengths.clear();
  for (const std::string& item : args.items()) {
    argv.push_back(item.data());
    lengths.push_back(item.size());
  }
}

}  // namespace

Connection::Connection(const RedisUrl& url, int timeout_ms)
    : url_(url), context_(nullptr, redisFree) {
  context_.reset(redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(timeout_ms)));
  if (!context_ || context_->err != 0) {
    const std::string why = context_ ? context_->errstr : "out of memory";
    throw BrokerError(BrokerError::Kind::unreachable,
                      "cannot connect to Redis at " + url.where() + " (" + why +
                          "): start redis-server there, or pass --broker redis://host:port");
  }
  // Replies wait at most this long; blocking reads ask for less.
  redisSetTimeout(context_.get(), to_timeval(timeout_ms));
  if (url.db != 0) {
    const Reply reply = command({"SELECT", std::to_string(url.db)});
    if (is_error(reply.get())) {
      throw BrokerError(BrokerError::Kind::unreachable,
                        "Redis at " + url.where() + " refused database " + std::to_string(url.db) +
                            ": " + std::string(text(reply.get())));
    }
  }
}

void Connection::io_failed(const char* doing) {
  const std::string why = context_->errstr[0] != '\0' ? context_->errstr : "connection lost";
  throw BrokerError(BrokerError::Kind::unreachable, std::string("Redis at ") + url_.where() +
                                                         ": " + doing + " failed (" + why + ")");
}

Reply Connection::command(const Args& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv_of(args, argv, lengths);
  auto* reply = static_cast<redisReply*>(redisCommandArgv(
      context_.get(), static_cast<int>(argv.size()), argv.data(), lengths.data()));
  if (reply == nullptr) io_failed(args.items().empty() ? "command" : args.items()[0].c_str());
  return Reply(reply);
}

Reply Connection::ok(const Args& args) {
  Reply reply = command(args);
  if (is_error(reply.get())) {
    throw std::runtime_error("Redis " + args.items()[0] + " failed: " +
                             std::string(text(reply.get())));
  }
  return reply;
}

void Connection::append(const Args& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv_of(args, argv, lengths);
  if (redisAppendCommandArgv(context_.get(), static_cast<int>(argv.size()), argv.data(),
                             lengths.data()) != REDIS_OK) {
    io_failed("append");
  }
}

Reply Connection::read() {
  void* reply = nullptr;
  if (redisGetReply(context_.get(), &reply) != REDIS_OK || reply == nullptr) io_failed("read");
  return Reply(static_cast<redisReply*>(reply));
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

}  // namespace micromodels::detail
