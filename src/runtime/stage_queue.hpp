// The packets waiting for a stage's consumers, and its overflow policy.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>
#include <vector>

#include "micromodels/packet.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/transport.hpp"

namespace micromodels::detail {

/// A packet waiting in a stage's queue.
struct Queued {
  Packet packet;
  std::int64_t enqueued = 0;  // tick_ns()
  Ticket ticket = 0;          // of the delivery it came with (0: none)
};

/// One queue, or for a per_stream stage one lane per stream, served by one consumer at a time
/// and taken in turns. With `newest` (live mode, a queue a source feeds) each stream keeps only
/// its newest packet: one arriving takes the place of its stream's packet still waiting, which is
/// dropped, and a full queue drops its oldest; consumers take first the stream served longest
/// ago, so that streams over capacity get equal shares whatever order their packets arrive in.
/// Changed only under the node's mutex; `depth` may be read without it.
class StageQueue {
 public:
  /// A packet the overflow policy dropped.
  struct Dropped {
    std::uint32_t stream = 0;
    std::uint64_t seq = 0;
    Ticket ticket = 0;
  };

  StageQueue(std::size_t capacity, Overflow overflow, bool per_stream, bool newest = false)
      : capacity_(capacity),
        overflow_(newest ? Overflow::drop_oldest : overflow),
        per_stream_(per_stream),
        newest_(newest) {}

  /// Adds `item`. When the queue is full and the policy drops, the packet dropped (the newest:
  /// this one; the oldest: the oldest of its lane or queue) is returned; with `newest`, the
  /// packet of the same stream it replaced.
  std::optional<Dropped> push(Queued&& item) {
    // Small enough to be inlined into the hop; the full queue's case and live mode's replacement
    // are not on the batch hop's path.
    if (newest_) return push_newest(std::move(item));
    if (depth_.load(std::memory_order_relaxed) >= capacity_ && overflow_ != Overflow::block) {
      return push_dropping(std::move(item));
    }
    append(std::move(item));
    return std::nullopt;
  }

  /// What consumers could start on now: packets, or ready lanes of a per_stream stage.
  [[nodiscard]] std::size_t available() const noexcept {
    return per_stream_ ? ready_lanes_.size() : queue_.size();
  }
  [[nodiscard]] std::size_t size() const noexcept { return queue_.size(); }
  [[nodiscard]] const Queued& front() const { return queue_.front(); }

  /// Moves up to `n` packets (from the next ready lane, for a per_stream stage, which is then
  /// busy until `release_lane`) into `batch`; returns the lane taken.
  std::optional<std::uint32_t> take(std::vector<Queued>& batch, std::size_t n) {
    std::optional<std::uint32_t> taken;
    std::deque<Queued>* from = &queue_;
    if (newest_ && !per_stream_) {
      // At most one packet per stream waits: take them one by one, fairest first.
      const std::size_t count = std::min(n, queue_.size());
      for (std::size_t i = 0; i < count; ++i) {
        const auto next = least_served(queue_, [](const Queued& q) { return q.packet.stream; });
        served_[next->packet.stream] = ++turns_;
        batch.push_back(std::move(*next));
        queue_.erase(next);
      }
      depth_.store(depth_.load(std::memory_order_relaxed) - count, std::memory_order_release);
      return std::nullopt;
    }
    if (per_stream_) {
      if (ready_lanes_.empty()) return std::nullopt;
      auto next = ready_lanes_.begin();
      if (newest_) next = least_served(ready_lanes_, [](std::uint32_t stream) { return stream; });
      taken = *next;
      ready_lanes_.erase(next);
      if (newest_) served_[*taken] = ++turns_;
      Lane& lane = lanes_[*taken];
      lane.listed = false;
      lane.busy = true;
      from = &lane.queue;
    }
    const std::size_t count = std::min(n, from->size());
    for (std::size_t i = 0; i < count; ++i) {
      batch.push_back(std::move(from->front()));
      from->pop_front();
    }
    // Changed under the node's lock only: a plain store, read elsewhere without the lock.
    depth_.store(depth_.load(std::memory_order_relaxed) - count, std::memory_order_release);
    return taken;
  }

  /// A per_stream stage's stream that its transport took away: the packets waiting in its lane
  /// go, their tickets into `abandoned` (not settled: the transport delivers them again);
  /// returns how many.
  std::size_t clear_lane(std::uint32_t stream, std::vector<Ticket>& abandoned) {
    const auto lane = per_stream_ ? lanes_.find(stream) : lanes_.end();
    if (lane == lanes_.end() || lane->second.queue.empty()) return 0;
    const std::size_t count = lane->second.queue.size();
    for (const Queued& queued : lane->second.queue) abandoned.push_back(queued.ticket);
    lane->second.queue.clear();
    depth_.store(depth_.load(std::memory_order_relaxed) - count, std::memory_order_release);
    if (lane->second.listed) {
      ready_lanes_.erase(std::find(ready_lanes_.begin(), ready_lanes_.end(), stream));
      lane->second.listed = false;
    }
    if (!lane->second.busy) lanes_.erase(lane);
    return count;
  }

  /// A consumer is done with `lane`: it is offered again when packets wait in it.
  void release_lane(std::uint32_t stream) {
    Lane& lane = lanes_[stream];
    lane.busy = false;
    if (!lane.queue.empty()) {
      lane.listed = true;
      ready_lanes_.push_back(stream);
    } else if (!lane.listed) {
      lanes_.erase(stream);
    }
  }

  [[nodiscard]] std::size_t depth() const noexcept {
    return depth_.load(std::memory_order_acquire);
  }
  [[nodiscard]] std::size_t depth_max() const noexcept {
    return depth_max_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool full() const noexcept { return depth() >= capacity_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] Overflow overflow() const noexcept { return overflow_; }

 private:
  // The item of `items` whose stream was served longest ago (never: first), the earliest of
  // equals.
  template <class Items, class StreamOf>
  typename Items::iterator least_served(Items& items, StreamOf stream_of) {
    auto best = items.begin();
    std::uint64_t best_turn = std::numeric_limits<std::uint64_t>::max();
    for (auto it = items.begin(); it != items.end(); ++it) {
      const auto found = served_.find(stream_of(*it));
      const std::uint64_t turn = found == served_.end() ? 0 : found->second;
      if (turn < best_turn) {
        best = it;
        best_turn = turn;
      }
    }
    return best;
  }

  struct Lane {
    std::deque<Queued> queue;
    bool busy = false;    // a consumer is serving this stream
    bool listed = false;  // in ready_lanes_
  };

  /// push() into a full queue whose policy drops.
  // Live mode: the stream's waiting packet, if any, is replaced in its place (a stream whose
  // packets keep being replaced does not lose its turn); otherwise as push.
  std::optional<Dropped> push_newest(Queued&& item) {
    std::deque<Queued>& waiting = per_stream_ ? lanes_[item.packet.stream].queue : queue_;
    const auto same = std::find_if(waiting.begin(), waiting.end(), [&](const Queued& q) {
      return q.packet.stream == item.packet.stream;
    });
    if (same != waiting.end()) {
      const Dropped replaced{same->packet.stream, same->packet.seq, same->ticket};
      *same = std::move(item);
      return replaced;
    }
    if (depth_.load(std::memory_order_relaxed) >= capacity_ && overflow_ != Overflow::block) {
      return push_dropping(std::move(item));
    }
    append(std::move(item));
    return std::nullopt;
  }

  std::optional<Dropped> push_dropping(Queued&& item) {
    if (overflow_ == Overflow::drop_newest) {
      return Dropped{item.packet.stream, item.packet.seq, item.ticket};
    }
    std::deque<Queued>* oldest = &queue_;
    if (per_stream_) {
      auto lane = lanes_.find(item.packet.stream);
      if (lane == lanes_.end() || lane->second.queue.empty()) {
        lane = std::find_if(lanes_.begin(), lanes_.end(),
                            [](const auto& l) { return !l.second.queue.empty(); });
      }
      oldest = lane == lanes_.end() ? nullptr : &lane->second.queue;
    }
    if (oldest == nullptr || oldest->empty()) {
      return Dropped{item.packet.stream, item.packet.seq, item.ticket};
    }
    const Queued& front = oldest->front();
    const Dropped dropped{front.packet.stream, front.packet.seq, front.ticket};
    oldest->pop_front();
    depth_.store(depth_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    append(std::move(item));
    return dropped;
  }

  void append(Queued&& item) {
    if (per_stream_) {
      const std::uint32_t stream = item.packet.stream;
      Lane& lane = lanes_[stream];
      lane.queue.push_back(std::move(item));
      if (!lane.busy && !lane.listed) {
        lane.listed = true;
        ready_lanes_.push_back(stream);
      }
    } else {
      queue_.push_back(std::move(item));
    }
    const std::size_t depth = depth_.load(std::memory_order_relaxed) + 1;
    depth_.store(depth, std::memory_order_release);
    if (depth > depth_max_.load(std::memory_order_relaxed)) {
      depth_max_.store(depth, std::memory_order_relaxed);
    }
  }

  std::size_t capacity_;
  Overflow overflow_;
  bool per_stream_;
  bool newest_;
  std::deque<Queued> queue_;
  std::unordered_map<std::uint32_t, Lane> lanes_;
  std::deque<std::uint32_t> ready_lanes_;
  std::unordered_map<std::uint32_t, std::uint64_t> served_;  // newest: stream -> its last turn
  std::uint64_t turns_ = 0;
  std::atomic<std::size_t> depth_{0};
  std::atomic<std::size_t> depth_max_{0};
};

}  // namespace micromodels::detail
