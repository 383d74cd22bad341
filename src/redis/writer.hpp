// The one connection a process writes through. Commands go out in the order they were added,
// so that a packet's outputs (XADD) always reach Redis before its acknowledgement (XACK): what
// at-least-once rests on. Each batch is sent before the replies to the previous one are read,
// so Redis always has the next one queued; what is not confirmed goes again after a reconnect.
// A Redis with a maxmemory may refuse a write (OOM): there a batch that makes Redis grow goes as
// one transaction (MULTI/EXEC), taken whole or refused whole, and the next waits for its reply;
// a refused batch waits and goes again once Redis has room (memory_gate.hpp).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "redis_connection.hpp"

namespace micromodels::detail {

class Session;

class Writer {
 public:
  using OnReply = std::function<void(const redisReply*)>;
  explicit Writer(Session& session);
  ~Writer() { stop(); }

  void start();
  /// Queues a command; `on_reply` runs on the writer's thread with its reply.
  void add(Args args, OnReply on_reply = {});
  /// Waits until everything added before the call is confirmed (or the writer has ended).
  void drain();
  /// Sends what is queued, then ends the thread.
  void stop();

 private:
  struct Command {
    Args args;
    OnReply on_reply;
  };
  void run();
  void read_replies(Connection& conn, std::vector<Command>& sent);
  /// Sends the first commands of `batch` (a transaction when they make Redis grow) and takes
  /// them off it once Redis took them; false when Redis refused them for memory.
  bool transact(Connection& conn, std::vector<Command>& batch);
  void answered(Command& command, const redisReply* reply);
  /// `n` commands are done; `again` (refused for memory) goes before what is pending.
  void confirm(std::size_t n, std::vector<Command>&& again = {});
  /// The stage outputs (XADD) in `batch` and pending.
  std::size_t outputs_in(const std::vector<Command>& batch);
  void give_up(std::vector<Command>& batch);

  Session& session_;
  std::mutex mutex_;
  std::condition_variable wake_, confirmed_cv_;
  std::vector<Command> pending_;
  bool waiting_ = false, stopping_ = false, running_ = false;
  std::uint64_t added_ = 0, confirmed_ = 0;
  std::size_t most_per_transaction_;  // halves on each refusal, doubles back on success
  std::thread thread_;
};

}  // namespace micromodels::detail
