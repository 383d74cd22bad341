// What a stage with `state: per_stream` keeps for each stream: one State per stream id, made on
// first use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace micromodels::vision {

/// One `State` per stream. A state is handed out as a shared_ptr, so a stage may hold it (and
/// its own lock) while other streams are looked up.
template <class State>
class StreamStates {
 public:
  /// The state of `stream`, made from `args` the first time it is asked for.
  template <class... Args>
  std::shared_ptr<State> of(std::uint32_t stream, Args&&... args) {
    std::lock_guard lock(mutex_);
    std::shared_ptr<State>& state = states_[stream];
    if (!state) state = std::make_shared<State>(std::forward<Args>(args)...);
    return state;
  }

  /// Drops what is kept of `stream` (Stage::forget_stream): its next packet starts afresh. A
  /// stage still holding the old state's shared_ptr keeps it until it lets go.
  void forget(std::uint32_t stream) {
    std::lock_guard lock(mutex_);
    states_.erase(stream);
  }

 private:
  std::mutex mutex_;
  std::map<std::uint32_t, std::shared_ptr<State>> states_;
};

}  // namespace micromodels::vision
