// Where a stage's consumers run: a shared pool of worker threads for CPU-bound stages, or
// threads of their own for stages that block.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace micromodels::detail {

class Node;

/// Runs "serve one turn of this node" tokens. A token is a consumer slot already claimed.
class Executor {
 public:
  using Serve = std::function<void(Node&)>;
  virtual ~Executor() = default;
  virtual void submit(Node& node) = 0;
  /// Makes sure at least `consumers` tokens can run at once (dedicated executors add threads).
  virtual void reserve(int consumers) = 0;
  virtual void shutdown() = 0;
};

/// A fixed pool shared by all CPU-bound stages. A token submitted from one of its own workers
/// goes to that worker's "next" slot (the newest token runs next on the same thread, with hot
/// caches, like oneTBB's task bypass); the slot's previous token goes to the shared queue where
/// idle workers take it. Idle workers spin briefly before sleeping, since hand-offs are frequent.
class WorkerPool final : public Executor {
 public:
  WorkerPool(int threads, Serve serve, std::string name);
  ~WorkerPool() override;
  void submit(Node& node) override;
  void reserve(int /*consumers*/) override {}
  void shutdown() override;
  /// Called between packets of a long turn: moves the calling worker's pending token to the
  /// shared queue so that an idle worker runs it now instead of after this turn.
  static void share_pending();

 private:
  void run(int index);
  void push_shared(Node* node);
  Node* take_shared();

  Serve serve_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Node*> shared_;
  std::atomic<std::size_t> shared_size_{0};
  int sleepers_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

/// One thread per consumer for one blocking stage; grows when the stage is scaled up.
class DedicatedThreads final : public Executor {
 public:
  DedicatedThreads(Serve serve, std::string name);
  ~DedicatedThreads() override;
  void submit(Node& node) override;
  void reserve(int consumers) override;
  void shutdown() override;

 private:
  void run();

  Serve serve_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Node*> tokens_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace micromodels::detail
