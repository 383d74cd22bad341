// The one connection a process writes through: adds, acknowledgements, dead letters and
// back-pressure probes go out in the order they were given, pipelined.
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

/// Sends commands in the order `add` was called, so that a packet's outputs (XADD) always
/// reach Redis before its acknowledgement (XACK): what at-least-once rests on. A thread of its
/// own sends each batch before it reads the replies to the previous one, so Redis always has
/// the next batch queued. Commands not yet confirmed are sent again after a reconnect.
class Writer {
 public:
  using OnReply = std::function<void(const redisReply*)>;

  explicit Writer(Session& session) : session_(session) {}
  ~Writer() { stop(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void start();
  /// Queues a command; `on_reply` runs on the writer's thread with its reply.
  void add(Args args, OnReply on_reply = {});
  /// Waits until everything added before the call is confirmed (or the writer stopped).
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
  std::condition_variable wake_;
  std::condition_variable confirmed_cv_;
  std::vector<Command> pending_;
  bool waiting_ = false;
  bool stopping_ = false;
  bool running_ = false;
  std::uint64_t added_ = 0;
  std::uint64_t confirmed_ = 0;
  std::thread thread_;
};

}  // namespace micromodels::detail
