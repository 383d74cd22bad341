#include "one_euro_filter.hpp"

#include <cmath>
#include <numbers>

namespace micromodels::vision {

namespace {

// Seconds between two packets; the fallback step when time does not move forward, so that a
// source without timestamps still gets a sensible filter instead of a division by zero.
double step_seconds(std::int64_t previous_ns, std::int64_t now_ns, double fallback_rate_hz) {
  if (now_ns > previous_ns) return static_cast<double>(now_ns - previous_ns) * 1e-9;
  return 1.0 / (fallback_rate_hz > 0 ? fallback_rate_hz : 30.0);
}

}  // namespace

double one_euro_alpha(double cutoff_hz, double dt_s) noexcept {
  const double tau = 1.0 / (2.0 * std::numbers::pi * cutoff_hz);
  return 1.0 / (1.0 + tau / dt_s);
}

OneEuroFilter::OneEuroFilter(OneEuroParams params) : params_(params) {}

double OneEuroFilter::filter(double value, std::int64_t time_ns) {
  if (!initialized_) {
    initialized_ = true;
    value_ = value;
    speed_ = 0;
    time_ns_ = time_ns;
    return value;
  }
  const double dt = step_seconds(time_ns_, time_ns, params_.fallback_rate_hz);
  time_ns_ = time_ns;
  const double raw_speed = (value - value_) / dt;
  const double a_d = one_euro_alpha(params_.d_cutoff, dt);
  speed_ += a_d * (raw_speed - speed_);
  const double cutoff = params_.min_cutoff + params_.beta * std::abs(speed_);
  value_ += one_euro_alpha(cutoff, dt) * (value - value_);
  return value_;
}

OneEuroFilter2D::OneEuroFilter2D(OneEuroParams params) : params_(params) {}

Point OneEuroFilter2D::filter(Point value, std::int64_t time_ns) {
  if (!initialized_) {
    initialized_ = true;
    x_ = value.x;
    y_ = value.y;
    speed_x_ = speed_y_ = 0;
    time_ns_ = time_ns;
    return value;
  }
  const double dt = step_seconds(time_ns_, time_ns, params_.fallback_rate_hz);
  time_ns_ = time_ns;
  const double a_d = one_euro_alpha(params_.d_cutoff, dt);
  speed_x_ += a_d * ((value.x - x_) / dt - speed_x_);
  speed_y_ += a_d * ((value.y - y_) / dt - speed_y_);
  const double cutoff = params_.min_cutoff + params_.beta * std::hypot(speed_x_, speed_y_);
  const double a = one_euro_alpha(cutoff, dt);
  x_ += a * (value.x - x_);
  y_ += a * (value.y - y_);
  return {static_cast<float>(x_), static_cast<float>(y_)};
}

}  // namespace micromodels::vision
