// One hiredis connection: commands, pipelining, and errors that say what to do.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "core/detail/redis_url.hpp"

namespace micromodels::detail {

struct ReplyDeleter {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

/// A command's arguments. Binary-safe: an argument may hold any bytes.
class Args {
 public:
  Args() = default;
  Args(std::initializer_list<std::string_view> args) {
    for (std::string_view a : args) add(a);
  }
  Args& add(std::string_view arg) {
    items_.emplace_back(arg);
    return *this;
  }
  Args& add(std::string&& arg) {
    items_.push_back(std::move(arg));
    return *this;
  }
  Args& add(const char* arg) { return add(std::string_view(arg)); }
  Args& add(std::uint64_t value) { return add(std::to_string(value)); }
  [[nodiscard]] const std::vector<std::string>& items() const noexcept { return items_; }

 private:
  std::vector<std::string> items_;
};

/// RAII connection. Every I/O failure throws BrokerError(unreachable) naming host:port; an error
/// reply is returned as a reply (callers decide), except through `ok()`; NOPERM (the ACL
/// forbids the command or key) throws BrokerError(refused) saying what to grant.
class Connection {
 public:
  /// Connects, authenticates (AUTH with the URL's user and password, else PING) and SELECTs the
  /// database. Throws BrokerError (refused: a wrong or missing password) with what to do; never
  /// shows the password.
  explicit Connection(const RedisUrl& url);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Reply command(const Args& args);
  /// `command`, throwing std::runtime_error on an error reply (naming the command).
  Reply ok(const Args& args);
  /// `ok` for each of `commands`, pipelined: one round trip.
  void ok_all(const std::vector<Args>& commands);
  /// Pipelining: append any number, then read one reply per appended command, in order
  /// (`doing` names it in the error when the connection fails).
  void append(const Args& args);
  Reply read(const char* doing = "read");
  /// Writes what was appended without waiting for the replies (read them later, in order).
  void send();

 private:
  void authenticate();
  /// Owns what hiredis returned: throws for none (an I/O failure while `doing`) and for NOPERM.
  Reply checked(void* reply, const char* doing);
  /// The last I/O failure was a reply that did not come within the timeout.
  [[nodiscard]] bool timed_out() const;
  [[noreturn]] void io_failed(const char* doing);
  RedisUrl url_;
  std::unique_ptr<redisContext, void (*)(redisContext*)> context_;
};

// Reply helpers: null-safe, for the shapes Redis stream commands return.
[[nodiscard]] bool is_error(const redisReply* reply) noexcept;
[[nodiscard]] std::string_view text(
    const redisReply* reply) noexcept;                              // "" unless string/status/error
[[nodiscard]] long long integer(const redisReply* reply) noexcept;  // also parses strings
/// Element `i` of an array reply, or nullptr.
[[nodiscard]] const redisReply* at(const redisReply* reply, std::size_t i) noexcept;
[[nodiscard]] std::size_t size(const redisReply* reply) noexcept;
/// In a flat [key, value, key, value...] array: the value after `key`, or nullptr.
[[nodiscard]] const redisReply* field(const redisReply* reply, std::string_view key) noexcept;
/// In an XINFO GROUPS reply: the group named `name`, or nullptr.
[[nodiscard]] const redisReply* group(const redisReply* groups, std::string_view name) noexcept;
/// Redis refusing a write for memory (at its maxmemory): the "OOM ..." error of `reply`, also
/// when an EXECABORT gives it ("... because of: OOM ..."); empty for any other reply.
[[nodiscard]] std::string_view memory_refusal(const redisReply* reply) noexcept;

}  // namespace micromodels::detail
