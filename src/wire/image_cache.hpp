// The images one process has stored or fetched, with their references, bounded by bytes: a
// process fetches an image once, and knows an image it passes on unchanged by its pixels' buffer.
// The bound covers what can be in flight: an image evicted before its packet's last stage in this
// process would be fetched again.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "image_ref.hpp"

namespace micromodels::detail {

/// Least recently used entries go first once the pixels held pass the bound: the larger of
/// `min_bytes` and the images of `packets` packets, two each (a frame and the one image a stage
/// made of it), each as large as the largest image kept so far. `packets` is what the pipeline
/// can hold in flight (its queues' capacities), so a process keeps every image it will read
/// again however large the frames. Thread-safe.
///
/// "Unchanged" is buffer identity: `ref_of` answers only for an image whose pixels are the very
/// buffer kept here (same address, size and shape). The cache holds that buffer, so its address
/// cannot be reused while the entry lives, and `Buffer::mutable_data` refuses to write to shared
/// bytes: a stage that changes an image makes a new buffer, which has no reference yet.
class ImageCache {
 public:
  explicit ImageCache(std::size_t min_bytes, std::size_t packets = 0)
      : min_bytes_(min_bytes), packets_(packets) {}

  /// The reference of `image` when its pixels are the ones kept under it.
  [[nodiscard]] std::optional<ImageRef> ref_of(const Image& image);
  /// The image stored under `key`, when kept here.
  [[nodiscard]] std::optional<Image> image_at(const std::string& key);
  /// Keeps `image` as the pixels of `ref` (the most recently used).
  void keep(const ImageRef& ref, const Image& image);

  [[nodiscard]] std::size_t bytes() const;
  /// The bytes held at most, now: grows with the largest image kept.
  [[nodiscard]] std::size_t max_bytes() const;

 private:
  struct Kept {
    ImageRef ref;
    Image image;
  };
  using Entries = std::list<Kept>;
  void drop(Entries::iterator it);
  [[nodiscard]] std::size_t max_bytes_locked() const;

  const std::size_t min_bytes_;
  const std::size_t packets_;
  mutable std::mutex mutex_;
  Entries entries_;  // most recently used first
  std::unordered_map<std::string, Entries::iterator> by_key_;
  std::unordered_map<const std::byte*, Entries::iterator> by_pixels_;
  std::size_t bytes_ = 0;
  std::size_t largest_ = 0;  // the largest image kept so far, in bytes
};

}  // namespace micromodels::detail
