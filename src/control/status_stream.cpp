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

std::string StatusStreams::next_event(Clock::time_point& due,
                                      const std::function<bool()>& writable) {
  constexpr std::chrono::milliseconds kPoll{100};  // how soon a stopping endpoint is noticed
  while (Clock::now() < due) {
    if (stopping_.load() || !writable()) return {};
    std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), kPoll));
  }
  if (stopping_.load()) return {};
  due = std::max(due + kPeriod, Clock::now());
  return "data: " + sampler_.status().dump() + "\n\n";
}

}  // namespace micromodels::detail
