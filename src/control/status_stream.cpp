#include "status_stream.hpp"

#include <algorithm>
#include <thread>

namespace micromodels::detail {

bool StatusStreams::claim() {
  std::lock_guard lock(mutex_);
  if (clients_ >= kMaxClients) return false;
  ++clients_;
  return true;
}

void StatusStreams::release() {
  std::lock_guard lock(mutex_);
  --clients_;
}

void StatusStreams::stop(const nlohmann::ordered_json& last) {
  if (!last.is_null()) last_event_ = "data: " + last.dump() + "\n\n";
  stopping_.store(true);
}

std::string StatusStreams::next_event(Cursor& cursor, const std::function<bool()>& writable) {
  constexpr std::chrono::milliseconds kPoll{100};  // how soon a stopping endpoint is noticed
  while (!stopping_.load() && Clock::now() < cursor.due) {
    if (!writable()) return {};
    std::this_thread::sleep_for(std::min<Clock::duration>(cursor.due - Clock::now(), kPoll));
  }
  if (stopping_.load()) {
    // The run's final figures, at once, rather than those of up to 750 ms before its end.
    if (cursor.ended || !writable()) return {};
    cursor.ended = true;
    return last_event_;
  }
  cursor.due = std::max(cursor.due + kPeriod, Clock::now());
  return "data: " + sampler_.status().dump() + "\n\n";
}

}  // namespace micromodels::detail
