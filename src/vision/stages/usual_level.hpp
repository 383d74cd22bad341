// UsualLevel: where a measure of a person's face usually sits, for one that rises above it at
// times (the brows raised, the mouth in a smile), so that a frame can be judged against it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace micromodels::vision {

/// A low percentile of the last 300 values (12 s at 25 fps): low, so that the rises (the brows
/// go up for a second at a time, on cap12 for a third of its frames) do not lift it; over a
/// window, not a lower envelope, so that a short dip does not pull it down. A lower envelope
/// followed cap12's brows down in a 20-frame dip (a bowed head, frames 570-590), read them back
/// at their own height as raised for the next 200 frames, and `gaze.estimate` held the gaze all
/// that while. A level kept for long becomes the usual one: brows that stay up, a smile that
/// stays, count as usual again.
class UsualLevel {
 public:
  static constexpr std::size_t kFrames = 300;

  /// `quantile`: 0.2 follows a level kept for 240 of the last 300 frames and ignores a dip of
  /// up to 60; 0.1, 270 and 30.
  explicit UsualLevel(double quantile) : quantile_(quantile) {}

  /// How far `value` stands above the usual level of the values before it (0 for the first),
  /// then counts it.
  double above(double value) {
    double result = 0;
    if (!recent_.empty()) {
      sorted_.assign(recent_.begin(), recent_.end());
      const auto k = static_cast<std::ptrdiff_t>(quantile_ * static_cast<double>(sorted_.size() - 1));
      std::nth_element(sorted_.begin(), sorted_.begin() + k, sorted_.end());
      result = value - sorted_[static_cast<std::size_t>(k)];
    }
    if (recent_.size() < kFrames) {
      recent_.push_back(value);
    } else {
      recent_[next_] = value;
      next_ = (next_ + 1) % kFrames;
    }
    return result;
  }

  void reset() {
    recent_.clear();
    next_ = 0;
  }

 private:
  double quantile_;
  std::vector<double> recent_;  // the last kFrames values, oldest at next_ once full
  std::size_t next_ = 0;
  std::vector<double> sorted_;  // scratch, kept to spare an allocation per frame
};

}  // namespace micromodels::vision
