// The cheapest possible source: field-less packets as fast as asked, so that a benchmark measures
// the engine and not packet construction.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "micromodels/stage.hpp"

namespace micromodels::bench {

/// Emits `count` field-less packets, seq 0 to count - 1, on stream 0.
class CountSource final : public Source {
 public:
  explicit CountSource(std::uint64_t count) : count_(count) {}
  bool next(std::vector<Packet>& out) override {
    if (next_seq_ >= count_) return false;
    Packet packet;
    packet.seq = next_seq_++;
    out.push_back(std::move(packet));
    return next_seq_ < count_;
  }
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override { return count_; }

 private:
  std::uint64_t count_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace micromodels::bench
