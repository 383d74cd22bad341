// The one connection a process writes through. Commands go out in the order they were added,
// so that a packet's outputs (XADD) always reach Redis before its acknowledgement (XACK): what
// at-least-once rests on. Each batch is sent before the replies to the previous one are read,
// so Redis always has the next one queued; what is not confirmed goes again after a reconnect.
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
  explicit Writer(Session& session) : session_(session) {}
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

  Session& session_;
  std::mutex mutex_;
  std::condition_variable wake_, confirmed_cv_;
  std::vector<Command> pending_;
  bool waiting_ = false, stopping_ = false, running_ = false;
  std::uint64_t added_ = 0, confirmed_ = 0;
  std::thread thread_;
};

}  // namespace micromodels::detail
