// A benchmark's own plain hiredis connection: commands sent one by one or pipelined.
#pragma once

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <hiredis/hiredis.h>

namespace micromodels::bench {

/// One connection to the Redis at a redis://host:port URL; throws std::runtime_error naming the
/// URL when it cannot connect.
///
///   Context ctx("redis://127.0.0.1:6390");
///   ctx.command({"DEL", "key"});
struct Context {
  std::unique_ptr<redisContext, void (*)(redisContext*)> c{nullptr, redisFree};
  explicit Context(const std::string& url) {
    const std::string rest = url.substr(std::string("redis://").size());
    const auto colon = rest.rfind(':');
    c.reset(redisConnect(rest.substr(0, colon).c_str(), std::atoi(rest.c_str() + colon + 1)));
    if (!c || c->err != 0) throw std::runtime_error("bench: cannot connect to " + url);
  }
  /// Sends one command and waits for its reply, which it frees.
  void command(const std::vector<std::string>& args) { freeReplyObject(read_after(args)); }
  /// Sends one command and returns its reply: a string (a bulk or status reply, or the error's
  /// text), empty for other kinds.
  std::string text(const std::vector<std::string>& args) {
    redisReply* reply = read_after(args);
    std::string value = reply->str != nullptr ? std::string(reply->str, reply->len) : std::string();
    freeReplyObject(reply);
    return value;
  }
  /// Queues one command (pipelining); read() takes its reply.
  void append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> len;
    for (const auto& a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    redisAppendCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), len.data());
  }
  /// The next reply, for the caller to free with freeReplyObject.
  redisReply* read() {
    void* reply = nullptr;
    if (redisGetReply(c.get(), &reply) != REDIS_OK) throw std::runtime_error("bench: Redis I/O");
    return static_cast<redisReply*>(reply);
  }

 private:
  redisReply* read_after(const std::vector<std::string>& args) {
    append(args);
    return read();
  }
};

}  // namespace micromodels::bench
