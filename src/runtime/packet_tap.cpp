#include "micromodels/packet_tap.hpp"

namespace micromodels {

PacketTap::Next PacketTap::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (closed_) return {.packet = nullptr, .closed = true};
  const std::uint64_t before = kept_;
  ++watchers_;
  wanted_.store(true, std::memory_order_relaxed);
  arrived_.wait_for(lock, timeout, [&] { return closed_ || kept_ != before; });
  if (--watchers_ == 0) wanted_.store(false, std::memory_order_relaxed);
  return {.packet = kept_ != before ? latest_ : nullptr, .closed = closed_};
}

void PacketTap::keep(const Packet& packet) {
  std::lock_guard lock(mutex_);
  // Another consumer of the stage may have served the watchers since the load in `pass`.
  if (!wanted_.load(std::memory_order_relaxed)) return;
  wanted_.store(false, std::memory_order_relaxed);
  latest_ = std::make_shared<const Packet>(packet);
  ++kept_;
  arrived_.notify_all();
}

void PacketTap::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    wanted_.store(false, std::memory_order_relaxed);
  }
  arrived_.notify_all();
}

}  // namespace micromodels
