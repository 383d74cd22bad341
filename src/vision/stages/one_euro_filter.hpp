// The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass filter whose cutoff rises
// with the signal's speed, so that a still signal is steady and a moving one does not lag.
#pragma once

#include <cstdint>

#include "micromodels/packet.hpp"

namespace micromodels::vision {

/// Parameters, in the paper's terms. Units follow the signal: `beta` is per (signal unit / s).
struct OneEuroParams {
  double min_cutoff = 1.0;  // Hz: the cutoff at rest; lower is steadier, laggier
  double beta = 0.0;        // cutoff added per unit of speed; higher follows fast motion better
  double d_cutoff = 1.0;    // Hz: the cutoff of the speed estimate itself
  // Used as the time step when the timestamps do not advance (a source without times, or two
  // packets with the same time): 1 / this.
  double fallback_rate_hz = 30.0;
};

/// One scalar sequence. Not thread-safe: one filter per sequence, fed in time order.
///
///   OneEuroFilter f({.min_cutoff = 1.0, .beta = 0.05});
///   for (const Packet& p : frames) smoothed = f.filter(raw(p), p.time_ns);
class OneEuroFilter {
 public:
  explicit OneEuroFilter(OneEuroParams params = {});

  /// Filters `value` observed at `time_ns`; the first value after construction or reset()
  /// passes through unchanged.
  double filter(double value, std::int64_t time_ns);
  /// Forgets the history: the next value passes through (a new track, a cut in the video).
  void reset() noexcept { initialized_ = false; }
  [[nodiscard]] bool initialized() const noexcept { return initialized_; }
  [[nodiscard]] const OneEuroParams& params() const noexcept { return params_; }

 private:
  OneEuroParams params_;
  bool initialized_ = false;
  double value_ = 0;  // last filtered value
  double speed_ = 0;  // last filtered derivative
  std::int64_t time_ns_ = 0;
};

/// A 2-D point sequence. Both axes share one cutoff driven by the speed's magnitude, so that a
/// point moving along one axis is not smoothed differently from the same motion rotated.
class OneEuroFilter2D {
 public:
  explicit OneEuroFilter2D(OneEuroParams params = {});

  Point filter(Point value, std::int64_t time_ns);
  void reset() noexcept { initialized_ = false; }
  [[nodiscard]] bool initialized() const noexcept { return initialized_; }

 private:
  OneEuroParams params_;
  bool initialized_ = false;
  double x_ = 0, y_ = 0;
  double speed_x_ = 0, speed_y_ = 0;
  std::int64_t time_ns_ = 0;
};

/// The smoothing factor of an exponential low-pass with cutoff `cutoff_hz` at step `dt_s`
/// (the paper's alpha): 1 / (1 + tau / dt), tau = 1 / (2 pi cutoff).
[[nodiscard]] double one_euro_alpha(double cutoff_hz, double dt_s) noexcept;

}  // namespace micromodels::vision
