#include "trace_recorder.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "tick_clock.hpp"

namespace micromodels::detail {

/// One thread's events: full chunks handed over (under the recorder's lock) and the chunk it is
/// filling, which only it writes; `used` tells a reader how much of that chunk is written.
struct TraceBuffer {
  std::thread::id owner;
  std::uint32_t tid = 0;
  std::string name;
  std::vector<std::unique_ptr<TraceEvent[]>> full;
  std::unique_ptr<TraceEvent[]> chunk;
  std::atomic<std::size_t> used{0};
};

namespace {

// The most bytes one event takes in the file (the slice and its flow step, about 290) beside
// the stage's name, used to turn max_mb into a number of events.
constexpr std::uint64_t kEventBytes = 320;

std::uint64_t events_in(double max_mb, const std::vector<std::string>& stages) {
  std::size_t longest = 0;
  for (const std::string& name : stages) longest = std::max(longest, name.size());
  return static_cast<std::uint64_t>(max_mb * 1e6) / (kEventBytes + longest);
}

std::atomic<std::uint64_t> g_next_recorder{1};

// The calling thread's buffer of the recorder it last recorded for.
struct ThreadSlot {
  std::uint64_t recorder = 0;
  TraceBuffer* buffer = nullptr;
};
thread_local ThreadSlot t_slot;

}  // namespace

TraceRecorder::ClockPair TraceRecorder::ClockPair::now() {
  (void)tick_ns();  // the first call measures the counter's rate: not between the two reads
  const std::int64_t before = tick_ns();
  const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  const std::int64_t after = tick_ns();
  return {before + (after - before) / 2, wall};
}

namespace {

std::uint32_t thread_id([[maybe_unused]] std::size_t fallback) {
#if defined(__linux__)
  return static_cast<std::uint32_t>(::syscall(SYS_gettid));
#else
  return static_cast<std::uint32_t>(fallback);
#endif
}

std::string thread_name(std::uint32_t tid) {
#if defined(__linux__)
  char name[32] = {};
  if (pthread_getname_np(pthread_self(), name, sizeof name) == 0 && name[0] != '\0') {
    return std::string(name) + " " + std::to_string(tid);
  }
#endif
  return "thread " + std::to_string(tid);
}

std::string host_name() {
#if defined(__linux__)
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) return name;
#endif
  return "localhost";
}

int process_id() {
#if defined(__linux__)
  return static_cast<int>(::getpid());
#else
  return 1;
#endif
}

void append_escaped(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += '"';
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

// Nanoseconds as microseconds with three decimals: "12.345".
void append_us(std::string& out, std::int64_t ns) {
  if (ns < 0) {
    out += '-';
    ns = -ns;
  }
  append_integer(out, ns / 1000);
  const auto frac = static_cast<int>(ns % 1000);
  out += '.';
  out += static_cast<char>('0' + frac / 100);
  out += static_cast<char>('0' + frac / 10 % 10);
  out += static_cast<char>('0' + frac % 10);
}

}  // namespace

TraceRecorder::TraceRecorder(TraceConfig config, std::vector<std::string> stages,
                             std::string process)
    : config_(std::move(config)),
      stages_(std::move(stages)),
      process_(std::move(process) + " (" + host_name() + ", pid " + std::to_string(process_id()) +
               ")"),
      id_(g_next_recorder.fetch_add(1)),
      max_events_(events_in(config_.max_mb, stages_)),
      start_(ClockPair::now()),
      every_(static_cast<std::uint64_t>(std::max(config_.every, 1))),
      next_thinning_(max_events_ / 2) {
  file_ = std::fopen(config_.path.c_str(), "w");
  if (file_ == nullptr) {
    throw ConfigError({}, "trace",
                      "cannot write the trace file '" + config_.path + "': " +
                          std::strerror(errno) +
                          "; give a path in a directory that exists and is writable");
  }
}

TraceRecorder::~TraceRecorder() { finish(); }

TraceBuffer& TraceRecorder::buffer() {
  const std::thread::id self = std::this_thread::get_id();
  std::lock_guard lock(mutex_);
  TraceBuffer* found = nullptr;
  for (const auto& b : buffers_) {
    if (b->owner == self) found = b.get();
  }
  if (found == nullptr) {
    auto fresh = std::make_unique<TraceBuffer>();
    fresh->owner = self;
    fresh->tid = thread_id(buffers_.size() + 1);
    fresh->name = thread_name(fresh->tid);
    fresh->chunk = std::make_unique_for_overwrite<TraceEvent[]>(kChunk);
    found = fresh.get();
    buffers_.push_back(std::move(fresh));
  }
  t_slot = {id_, found};
  return *found;
}

void TraceRecorder::append(const TraceEvent& event) {
  TraceBuffer& b = t_slot.recorder == id_ ? *t_slot.buffer : buffer();
  const std::size_t used = b.used.load(std::memory_order_relaxed);
  b.chunk[used] = event;
  b.used.store(used + 1, std::memory_order_release);
  if (used + 1 == kChunk) hand_off(b);
}

void TraceRecorder::hand_off(TraceBuffer& b) {
  auto fresh = std::make_unique_for_overwrite<TraceEvent[]>(kChunk);
  std::lock_guard lock(mutex_);
  b.full.push_back(std::move(b.chunk));
  b.chunk = std::move(fresh);
  b.used.store(0, std::memory_order_relaxed);
  handed_ += kChunk;
  thin_locked();
}

void TraceRecorder::thin_locked() {
  const std::uint64_t every = every_.load(std::memory_order_relaxed);
  if (every == 0 || handed_ < next_thinning_) return;
  if (handed_ >= max_events_ || every > (std::uint64_t{1} << 40)) {
    every_.store(0, std::memory_order_relaxed);
    spdlog::warn("trace '{}': full at trace.max_mb = {} MB; no more packets are traced",
                 config_.path, config_.max_mb);
    return;
  }
  every_.store(every * 2, std::memory_order_relaxed);
  next_thinning_ += (max_events_ - next_thinning_) / 2;
  spdlog::info("trace '{}': half the room left of trace.max_mb = {} MB is used; from now on 1 "
               "packet in {} is traced",
               config_.path, config_.max_mb, every * 2);
}

void TraceRecorder::finish() {
  std::vector<TraceEvent> events;
  std::vector<std::pair<std::uint32_t, std::string>> threads;
  {
    std::lock_guard lock(mutex_);
    if (file_ == nullptr) return;
    every_.store(0, std::memory_order_relaxed);
    for (const auto& b : buffers_) {
      threads.emplace_back(b->tid, b->name);
      const auto take = [&](const TraceEvent* chunk, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
          events.push_back(chunk[i]);
          events.back().thread = b->tid;
        }
      };
      for (const auto& chunk : b->full) take(chunk.get(), kChunk);
      take(b->chunk.get(), b->used.load(std::memory_order_acquire));
      b->full.clear();
      b->used.store(0, std::memory_order_relaxed);
    }
  }
  // Threads record up to a chunk each beyond what was handed over: keep the earliest events
  // that fit in max_mb.
  std::size_t cut = 0;
  if (events.size() > max_events_) {
    std::sort(events.begin(), events.end(),
              [](const TraceEvent& a, const TraceEvent& b) { return a.start < b.start; });
    cut = events.size() - max_events_;
    events.resize(max_events_);
  }
  // One packet's stages together, in the order they started: the flow links them in that order.
  std::sort(events.begin(), events.end(), [](const TraceEvent& a, const TraceEvent& b) {
    if (a.stream != b.stream) return a.stream < b.stream;
    if (a.seq != b.seq) return a.seq < b.seq;
    if (a.start != b.start) return a.start < b.start;
    return a.stage < b.stage;
  });

  // The per-packet clock to wall-clock time, along the line through the clock pairs taken at
  // the start and now: this corrects the error in the rate tick_ns() measured for its counter,
  // so that processes on one machine agree to the microsecond over a long run.
  const ClockPair end = ClockPair::now();
  const double drift = end.tick > start_.tick
                           ? static_cast<double>((end.wall - start_.wall) - (end.tick - start_.tick)) /
                                 static_cast<double>(end.tick - start_.tick)
                           : 0.0;
  const auto wall = [&](std::int64_t tick) {
    const std::int64_t since = tick - start_.tick;
    return start_.wall + since + static_cast<std::int64_t>(static_cast<double>(since) * drift);
  };
  const int pid = process_id();
  const auto max_bytes = static_cast<std::uint64_t>(config_.max_mb * 1e6);
  std::string out;
  out.reserve(1 << 20);
  std::uint64_t written = 0;
  const auto flush = [&] {
    std::fwrite(out.data(), 1, out.size(), file_);
    written += out.size();
    out.clear();
  };
  out += "{\"traceEvents\":[\n";
  out += R"({"name":"process_name","ph":"M","pid":)";
  append_integer(out, pid);
  out += R"(,"args":{"name":)";
  append_escaped(out, process_);
  out += "}}";
  for (const auto& [tid, name] : threads) {
    out += ",\n" R"({"name":"thread_name","ph":"M","pid":)";
    append_integer(out, pid);
    out += R"(,"tid":)";
    append_integer(out, tid);
    out += R"(,"args":{"name":)";
    append_escaped(out, name);
    out += "}}";
  }
  std::string event;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const TraceEvent& e = events[i];
    const bool first = i == 0 || events[i - 1].stream != e.stream || events[i - 1].seq != e.seq;
    const bool last = i + 1 == events.size() || events[i + 1].stream != e.stream ||
                      events[i + 1].seq != e.seq;
    event.clear();
    event += ",\n" R"({"name":)";
    append_escaped(event, e.stage < stages_.size() ? stages_[e.stage] : "?");
    event += R"(,"cat":"stage","ph":"X","ts":)";
    append_us(event, wall(e.start));
    event += R"(,"dur":)";
    append_us(event, e.end - e.start);
    event += R"(,"pid":)";
    append_integer(event, pid);
    event += R"(,"tid":)";
    append_integer(event, e.thread);
    event += R"(,"args":{"stream":)";
    append_integer(event, e.stream);
    event += R"(,"seq":)";
    append_integer(event, e.seq);
    event += R"(,"wait_us":)";
    append_us(event, e.start - e.enqueued);
    if (e.failed) event += R"(,"failed":true)";
    if (e.dropped) event += R"(,"dropped":true)";
    event += "}}";
    if (!(first && last)) {
      // A flow step bound to the slice above (same cat, pid, tid and ts): Perfetto draws one
      // packet's path from stage to stage. The id is the packet's (stream, seq).
      event += ",\n" R"({"name":"packet","cat":"stage","ph":")";
      event += first ? 's' : (last ? 'f' : 't');
      event += R"(","bp":"e","id":)";
      append_integer(event, (std::uint64_t{e.stream} << 32) + (e.seq & 0xffffffffU));
      event += R"(,"ts":)";
      append_us(event, wall(e.start));
      event += R"(,"pid":)";
      append_integer(event, pid);
      event += R"(,"tid":)";
      append_integer(event, e.thread);
      event += "}";
    }
    if (written + out.size() + event.size() + 256 > max_bytes) {  // never, by max_events_
      cut += events.size() - i;
      events.resize(i);
      break;
    }
    out += event;
    if (out.size() >= (1U << 20)) flush();
  }
  out += "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"clock\":\"wall-clock microseconds since "
         "the epoch\",\"every\":";
  append_integer(out, std::max(config_.every, 1));
  out += "}}\n";
  flush();
  const bool ok = std::ferror(file_) == 0;
  std::fclose(file_);
  file_ = nullptr;
  if (cut > 0) {
    spdlog::warn("trace '{}': {} events left out to stay within trace.max_mb = {} MB",
                 config_.path, cut, config_.max_mb);
  }
  if (!ok) {
    spdlog::error("trace '{}': writing the file failed: {}", config_.path, std::strerror(errno));
    return;
  }
  spdlog::info("trace '{}': {} stage events of {} threads, {:.1f} MB", config_.path,
               events.size(), threads.size(), static_cast<double>(written) / 1e6);
}

}  // namespace micromodels::detail
