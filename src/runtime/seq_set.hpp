// The seqs of one stream seen so far, in little memory when they come roughly in order.
#pragma once

#include <cstdint>
#include <set>

namespace micromodels::detail {

/// Every seq below `low()`, and the ones above it. Used where "was this (stream, seq) here
/// already?" must be answered for ever: joins (a part that comes after its join settled),
/// and a transport's duplicates and progress.
class SeqSet {
 public:
  explicit SeqSet(std::uint64_t low = 0) : low_(low) {}
  [[nodiscard]] bool contains(std::uint64_t seq) const { return seq < low_ || above_.contains(seq); }
  void insert(std::uint64_t seq) {
    if (seq < low_) return;
    if (seq > low_) {
      above_.insert(seq);
      return;
    }
    ++low_;
    while (!above_.empty() && *above_.begin() == low_) {
      above_.erase(above_.begin());
      ++low_;
    }
  }
  /// The lowest seq not in the set: every seq below it is.
  [[nodiscard]] std::uint64_t low() const noexcept { return low_; }

 private:
  std::uint64_t low_;
  std::set<std::uint64_t> above_;
};

}  // namespace micromodels::detail
