// Instances of a model that is not safe to run from two threads at once (cv::dnn::Net), lent
// one per concurrent call so that a stage with several consumers runs them in parallel.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace micromodels::vision {

template <class Model>
class ModelPool {
 public:
  explicit ModelPool(std::function<std::unique_ptr<Model>()> make) : make_(std::move(make)) {
    free_.push_back(make_());  // load one now, so that a bad model file fails at build time
  }

  /// Runs `use(model)` with an instance no other thread is using; makes another when all are busy.
  template <class Use>
  auto with(Use&& use) {
    std::unique_ptr<Model> model;
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        model = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!model) model = make_();
    struct Return {
      ModelPool* pool;
      std::unique_ptr<Model>* model;
      ~Return() {
        std::lock_guard lock(pool->mutex_);
        pool->free_.push_back(std::move(*model));
      }
    } give_back{this, &model};
    return use(*model);
  }

 private:
  std::function<std::unique_ptr<Model>()> make_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Model>> free_;
};

}  // namespace micromodels::vision
