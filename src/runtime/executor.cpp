#include "executor.hpp"

#include <chrono>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace micromodels::detail {

namespace {

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// The pool a thread works for, and that thread's next-token slot.
thread_local WorkerPool* current_pool = nullptr;
thread_local Node* next_token = nullptr;

// Names the calling thread (Linux keeps 15 characters), as traces, top -H and debuggers show it.
void name_thread([[maybe_unused]] const std::string& name) {
#if defined(__linux__)
  prctl(PR_SET_NAME, name.substr(0, 15).c_str(), 0UL, 0UL, 0UL);
#endif
}

constexpr auto kSpin = std::chrono::microseconds(50);
// After this long spinning, yield the core between checks: on a small machine the threads of
// blocking stages need it more than an idle worker does.
constexpr auto kSpinBeforeYield = std::chrono::microseconds(5);

}  // namespace

WorkerPool::WorkerPool(int threads, Serve serve, std::string name)
    : serve_(std::move(serve)), name_(std::move(name)) {
  threads_.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this, i] { run(i); });
}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::submit(Node& node) {
  if (current_pool == this) {
    // The older token goes to the shared queue, where an idle worker can take it.
    if (Node* previous = std::exchange(next_token, &node)) push_shared(previous);
    return;
  }
  push_shared(&node);
}

void WorkerPool::share_pending() {
  if (current_pool == nullptr || next_token == nullptr) return;
  current_pool->push_shared(std::exchange(next_token, nullptr));
}

void WorkerPool::push_shared(Node* node) {
  std::lock_guard lock(mutex_);
  shared_.push_back(node);
  shared_size_.store(shared_.size(), std::memory_order_release);
  if (sleepers_ > 0) wake_.notify_one();
}

Node* WorkerPool::take_shared() {
  std::lock_guard lock(mutex_);
  if (shared_.empty()) return nullptr;
  Node* node = shared_.front();
  shared_.pop_front();
  shared_size_.store(shared_.size(), std::memory_order_release);
  return node;
}

void WorkerPool::run(int index) {
  name_thread("pool " + std::to_string(index));
  current_pool = this;
  for (;;) {
    if (Node* node = std::exchange(next_token, nullptr)) {
      serve_(*node);
      continue;
    }
    if (shared_size_.load(std::memory_order_acquire) > 0) {
      if (Node* node = take_shared()) {
        serve_(*node);
        continue;
      }
    }
    // Spin a little: in a busy pipeline the next token usually comes within microseconds.
    const auto spin_start = std::chrono::steady_clock::now();
    bool found = false;
    for (auto now = spin_start; now - spin_start < kSpin; now = std::chrono::steady_clock::now()) {
      if (shared_size_.load(std::memory_order_acquire) > 0) {
        found = true;
        break;
      }
      if (now - spin_start < kSpinBeforeYield) {
        for (int i = 0; i < 32; ++i) cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    if (found) continue;
    std::unique_lock lock(mutex_);
    ++sleepers_;
    wake_.wait(lock, [this] { return stopping_ || !shared_.empty(); });
    --sleepers_;
    if (stopping_ && shared_.empty()) break;
  }
  current_pool = nullptr;
}

void WorkerPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

DedicatedThreads::DedicatedThreads(Serve serve, std::string name)
    : serve_(std::move(serve)), name_(std::move(name)) {}

DedicatedThreads::~DedicatedThreads() { shutdown(); }

void DedicatedThreads::submit(Node& node) {
  {
    std::lock_guard lock(mutex_);
    tokens_.push_back(&node);
  }
  wake_.notify_one();
}

void DedicatedThreads::reserve(int consumers) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  while (static_cast<int>(threads_.size()) < consumers) threads_.emplace_back([this] { run(); });
}

void DedicatedThreads::run() {
#if defined(__linux__)
  // Blocking stages wait on timers and I/O; Linux's default 50 us timer slack would add that much
  // to every wait, a visible share of a 1 ms model call.
  prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
  name_thread(name_);
  for (;;) {
    Node* node = nullptr;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !tokens_.empty(); });
      if (tokens_.empty()) break;
      node = tokens_.front();
      tokens_.pop_front();
    }
    serve_(*node);
  }
}

void DedicatedThreads::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
  }
  wake_.notify_all();
  for (auto& thread : threads) {
    if (thread.joinable()) thread.join();
  }
}

}  // namespace micromodels::detail
