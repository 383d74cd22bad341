#include "writer.hpp"

#include <algorithm>
#include <chrono>

#include "micromodels/redis.hpp"

#include "redis_outlet.hpp"
#include "session.hpp"

namespace micromodels::detail {

// Most commands sent in one go: bounds what waits unconfirmed (and is sent again on reconnect).
constexpr std::size_t kMostPerBatch = 1024;
// How often a batch Redis refused for memory is tried again.
constexpr auto kRetryRefused = std::chrono::milliseconds(100);

namespace {

// The commands the writer sends that make Redis grow: refused (OOM) when it is at its maxmemory.
bool grows(const Args& args) {
  const std::string& name = args.items().front();
  return name == "XADD" || name == "SET" || name == "HINCRBY";
}

std::size_t bytes_of(const Args& args) {
  std::size_t bytes = 0;
  for (const std::string& arg : args.items()) bytes += arg.size();
  return bytes;
}

}  // namespace

Writer::Writer(Session& session) : session_(session), most_per_transaction_(kMostPerBatch) {}

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

void Writer::answered(Command& command, const redisReply* reply) {
  if (is_error(reply)) {
    const std::string& name = command.args.items().front();
    const std::string why(text(reply));
    if (name == "XADD" || name == "SET") {
      // Redis will not keep a packet or the image it refers to (a key of another type): the
      // run cannot deliver it, so it stops rather than lose it.
      session_.fail(std::make_exception_ptr(BrokerError(
          BrokerError::Kind::lost, "Redis at " + session_.url.where() + " refused " + name +
                                       " of " + command.args.items()[1] + ": " + why)));
    } else if (!why.starts_with("NOGROUP")) {  // NOGROUP: a new run reset the stream
      log().warn("Redis refused {}: {}", name, why);
    }
  }
  if (command.on_reply) command.on_reply(reply);
}

void Writer::confirm(std::size_t n, std::vector<Command>&& again) {
  {
    std::lock_guard lock(mutex_);
    confirmed_ += n;
    pending_.insert(pending_.begin(), std::make_move_iterator(again.begin()),
                    std::make_move_iterator(again.end()));
  }
  confirmed_cv_.notify_all();
}

void Writer::read_replies(Connection& conn, std::vector<Command>& sent) {
  // A refusal for memory here (no maxmemory when the batch went, one set since) sends that
  // command again after what was in flight: a transaction from now on (memory_gate.hpp).
  std::vector<Command> again;
  for (Command& command : sent) {
    const Reply reply = conn.read();
    if (!memory_refusal(reply.get()).empty() && grows(command.args)) {
      again.push_back(std::move(command));
    } else {
      answered(command, reply.get());
    }
  }
  confirm(sent.size() - again.size(), std::move(again));
  sent.clear();
}

bool Writer::transact(Connection& conn, std::vector<Command>& batch) {
  const auto n = static_cast<std::ptrdiff_t>(std::min(batch.size(), most_per_transaction_));
  const auto end = batch.begin() + n;
  const bool growing =
      std::any_of(batch.begin(), end, [](const Command& c) { return grows(c.args); });
  if (growing) conn.append({"MULTI"});
  for (auto it = batch.begin(); it != end; ++it) conn.append(it->args);
  if (growing) conn.append({"EXEC"});
  conn.send();
  if (!growing) {  // nothing Redis could refuse for memory
    for (auto it = batch.begin(); it != end; ++it) answered(*it, conn.read().get());
  } else {
    (void)conn.read();    // MULTI's OK
    std::string refusal;  // the first command Redis would not queue, and why
    for (auto it = batch.begin(); it != end; ++it) {
      const Reply queued = conn.read();
      if (is_error(queued.get()) && refusal.empty()) {
        const std::vector<std::string>& args = it->args.items();
        refusal = std::string(text(queued.get())) + " (" + args.front() + " of " +
                  args[args.front() == "EVAL" ? 3 : 1] + ")";
      }
    }
    const Reply done = conn.read();
    if (is_error(done.get())) {  // EXECABORT: nothing of it was done
      if (refusal.empty()) {     // every command was queued: Redis refused them at EXEC, when it
        const std::string_view why = memory_refusal(done.get());  // checks its memory again
        refusal = why.empty() ? text(done.get()) : why;
      }
      const std::size_t bytes = n == 1 ? bytes_of(batch.front().args) : 0;
      const bool oom = refusal.starts_with("OOM");
      if (!oom || !session_.memory.fits(bytes)) {
        session_.fail(std::make_exception_ptr(BrokerError(
            BrokerError::Kind::lost, "Redis at " + session_.url.where() +
                                         " refused a write: " + refusal +
                                         (oom ? "; it is " + std::to_string(bytes) +
                                                    " bytes, more than Redis can ever hold (" +
                                                    session_.memory.figures() + "): raise maxmemory"
                                              : ""))));
      }
      most_per_transaction_ = std::max<std::size_t>(1, most_per_transaction_ / 2);
      return false;
    }
    auto it = batch.begin();
    for (std::size_t i = 0; it != end; ++it, ++i) answered(*it, at(done.get(), i));
  }
  most_per_transaction_ = std::min(kMostPerBatch, most_per_transaction_ * 2);
  batch.erase(batch.begin(), end);
  confirm(static_cast<std::size_t>(n));
  return true;
}

std::size_t Writer::outputs_in(const std::vector<Command>& batch) {
  const auto output = [](const Command& c) { return c.args.items().front() == "XADD"; };
  std::lock_guard lock(mutex_);
  return std::max<std::size_t>(
      1, static_cast<std::size_t>(std::count_if(batch.begin(), batch.end(), output) +
                                  std::count_if(pending_.begin(), pending_.end(), output)));
}

// The process stops while Redis refuses its writes: what waits is given up (and what came after
// it, since an acknowledgement there may be for a packet whose output was refused). The inputs
// stay pending in Redis, for another process: nothing is lost.
void Writer::give_up(std::vector<Command>& batch) {
  std::size_t n = batch.size();
  {
    std::lock_guard lock(mutex_);
    n += pending_.size();
    pending_.clear();
  }
  log().warn(
      "Redis at {} refuses writes for memory while this process stops: {} commands not "
      "written; the packets they were for stay pending in Redis for another process",
      session_.url.where(), n);
  batch.clear();
  session_.memory.refused(0);
  confirm(n);
}

void Writer::run() {
  std::unique_ptr<Connection> conn;
  std::vector<Command> sent;   // written, replies not read yet (no maxmemory)
  std::vector<Command> batch;  // taken from pending_, not written yet (or refused)
  bool refused = false;        // Redis refused the head of `batch` for memory
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (refused) {
        wake_.wait_for(lock, kRetryRefused, [this] { return stopping_; });
      } else if (pending_.empty() && sent.empty() && batch.empty()) {
        if (stopping_) break;
        // Outlets waiting for room are probed again every 2 ms.
        waiting_ = true;
        const auto wait = session_.outlets_waiting.load() > 0 ? std::chrono::milliseconds(2)
                                                              : std::chrono::milliseconds(100);
        wake_.wait_for(lock, wait, [this] { return !pending_.empty() || stopping_; });
        waiting_ = false;
      }
      const std::size_t take =
          std::min(pending_.size(), kMostPerBatch - std::min(kMostPerBatch, batch.size()));
      batch.insert(batch.end(), std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(take)));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(take));
    }
    if (refused && (session_.stopping() || stopping_)) {
      give_up(batch);
      refused = false;
      continue;
    }
    // A lost connection keeps `sent` and `batch` as they are: after the reconnect, what was
    // sent goes again first, then the batch.
    const bool on = session_.attempt(conn, "writer", [&](Connection& redis, bool fresh) {
      if (fresh) {
        // Unconfirmed commands from before a reconnect go again, first (the sinks drop duplicates).
        batch.insert(batch.begin(), std::make_move_iterator(sent.begin()),
                     std::make_move_iterator(sent.end()));
        sent.clear();
      }
      if (session_.memory.limited()) {
        // One transaction at a time: a refused one must not be overtaken by the next.
        if (!sent.empty()) read_replies(redis, sent);
        const bool was_refused = std::exchange(refused, !batch.empty() && !transact(redis, batch));
        if (refused) {
          session_.memory.refused(outputs_in(batch));
        } else if (was_refused) {
          session_.memory.refused(0);
        }
      } else {
        // This batch goes out before the previous one's replies are read, so that Redis has it
        // queued meanwhile instead of waiting for us.
        for (const Command& command : batch) redis.append(command.args);
        if (!batch.empty()) redis.send();
        read_replies(redis, sent);
        sent.swap(batch);
        if (std::exchange(refused, false)) session_.memory.refused(0);
      }
      RedisOutlet::probe_waiting(session_);
    });
    if (!on) break;
  }
  std::lock_guard lock(mutex_);
  running_ = false;
  confirmed_cv_.notify_all();
}

}  // namespace micromodels::detail
