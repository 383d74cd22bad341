// The packets leaving one stage, handed on request to whoever watches them (the control
// endpoint's live preview, GET /preview/FIELD).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "micromodels/packet.hpp"

namespace micromodels {

/// One stage's tap. The engine passes it every packet leaving the stage; it keeps a copy only
/// when a watcher is waiting for one, so a stage nobody watches pays one relaxed load and a
/// branch per packet, and a watched one a copy of one packet per packet a watcher asks for
/// (images are shared buffers: the copy shares their pixels).
///
///   PacketTap& tap = run.tap("sink");
///   for (;;) {
///     const PacketTap::Next next = tap.next(std::chrono::seconds(1));
///     if (next.closed) break;                    // the run has ended
///     if (next.packet) show(next.packet->get<Image>("frame"));
///   }
class PacketTap {
 public:
  struct Next {
    std::shared_ptr<const Packet> packet{};  // null when none left the stage in time
    bool closed = false;                     // the run has ended: no packet will come
  };

  /// The engine, for every packet leaving the stage.
  void pass(const Packet& packet) {
    if (wanted_.load(std::memory_order_relaxed)) [[unlikely]] keep(packet);
  }
  /// A watcher: the first packet to leave the stage after this call, waiting at most
  /// `timeout`. Several watchers waiting at once get the same packet. Any thread.
  [[nodiscard]] Next next(std::chrono::milliseconds timeout);
  /// The run has ended: wakes every watcher; `next` then returns closed at once. Idempotent.
  void close();

 private:
  void keep(const Packet& packet);

  std::atomic<bool> wanted_{false};  // a watcher waits and no packet has come since
  std::mutex mutex_;
  std::condition_variable arrived_;
  int watchers_ = 0;  // waiting in `next`
  std::shared_ptr<const Packet> latest_{};
  std::uint64_t kept_ = 0;  // packets kept so far
  bool closed_ = false;
};

}  // namespace micromodels
