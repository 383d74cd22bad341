#include "writer.hpp"

#include <chrono>

#include "micromodels/redis.hpp"
#include "redis_outlet.hpp"
#include "session.hpp"

namespace micromodels::detail {

// Most commands sent in one go: bounds what waits unconfirmed (and is sent again on reconnect).
constexpr std::size_t kMostPerBatch = 1024;

void Writer::start() {
  std::lock_guard lock(mutex_);
  if (running_) return;
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void Writer::add(Args args, OnReply on_reply) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    pending_.push_back({std::move(args), std::move(on_reply)});
    ++added_;
    wake = waiting_;
  }
  if (wake) wake_.notify_one();
}

void Writer::drain() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = added_;
  wake_.notify_one();
  confirmed_cv_.wait(lock, [&] { return confirmed_ >= target || !running_; });
}

void Writer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();  // also after it ended by itself (Redis gone for good)
}

void Writer::read_replies(Connection& conn, std::vector<Command>& sent) {
  for (Command& command : sent) {
    const Reply reply = conn.read();
    if (is_error(reply.get())) {
      const std::string& name = command.args.items().front();
      const std::string why(text(reply.get()));
      if (name == "XADD" || name == "SET") {
        // Redis will not keep a packet or the image it refers to (out of memory, a key of
        // another type): the run cannot deliver it, so it stops rather than lose it.
        session_.fail(std::make_exception_ptr(BrokerError(
            BrokerError::Kind::lost, "Redis at " + session_.url.where() + " refused " + name +
                                         " of " + command.args.items()[1] + ": " + why +
                                         (why.starts_with("OOM")
                                              ? " (raise maxmemory, or lower wire.image_ttl_s)"
                                              : ""))));
      } else if (!why.starts_with("NOGROUP")) {  // NOGROUP: a new run reset the stream
        log().warn("Redis refused {}: {}", name, why);
      }
    }
    if (command.on_reply) command.on_reply(reply.get());
  }
  {
    std::lock_guard lock(mutex_);
    confirmed_ += sent.size();
  }
  confirmed_cv_.notify_all();
  sent.clear();
}

void Writer::run() {
  std::unique_ptr<Connection> conn;
  std::vector<Command> sent;   // written, replies not read yet
  std::vector<Command> batch;  // taken from pending_
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (pending_.empty() && sent.empty()) {
        if (stopping_) break;
        // Outlets waiting for room are probed again every 2 ms.
        waiting_ = true;
        const auto wait = session_.outlets_waiting.load() > 0 ? std::chrono::milliseconds(2)
                                                              : std::chrono::milliseconds(100);
        wake_.wait_for(lock, wait, [this] { return !pending_.empty() || stopping_; });
        waiting_ = false;
      }
      const std::size_t take = std::min(pending_.size(), kMostPerBatch);
      batch.insert(batch.end(), std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(take)));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(take));
    }
    try {
      if (!conn) {
        conn = session_.connect();
        // Unconfirmed commands from before a reconnect go again (the sinks drop duplicates).
        for (const Command& command : sent) conn->append(command.args);
      }
      // This batch goes out before the previous one's replies are read, so that Redis has it
      // queued meanwhile instead of waiting for us.
      for (const Command& command : batch) conn->append(command.args);
      if (!batch.empty()) conn->send();
      read_replies(*conn, sent);
      sent.swap(batch);
      RedisOutlet::probe_waiting(session_);
    } catch (const BrokerError& error) {
      conn.reset();
      sent.insert(sent.end(), std::make_move_iterator(batch.begin()),
                  std::make_move_iterator(batch.end()));
      batch.clear();
      if (!session_.reconnect(error, "writer")) break;
    }
  }
  std::lock_guard lock(mutex_);
  running_ = false;
  confirmed_cv_.notify_all();
}

}  // namespace micromodels::detail
