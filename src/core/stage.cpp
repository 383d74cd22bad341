#include "micromodels/stage.hpp"

namespace micromodels {

void EventCounts::add(std::string_view event, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  const auto found = counts_.find(event);
  if (found != counts_.end()) {
    found->second += n;
  } else {
    counts_.emplace(std::string(event), n);
  }
}

std::map<std::string, std::uint64_t> EventCounts::counts() const {
  std::lock_guard lock(mutex_);
  return {counts_.begin(), counts_.end()};
}

void Stage::process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) {
  for (Packet& packet : batch) process(std::move(packet), out);
}

void Stage::forget_stream(std::uint32_t /*stream*/) {}

}  // namespace micromodels
