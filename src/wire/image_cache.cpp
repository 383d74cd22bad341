#include "image_cache.hpp"

#include <algorithm>

namespace micromodels::detail {

std::optional<ImageRef> ImageCache::ref_of(const Image& image) {
  std::lock_guard lock(mutex_);
  const auto found = by_pixels_.find(image.pixels.data());
  if (found == by_pixels_.end()) return std::nullopt;
  const Kept& kept = *found->second;
  if (kept.image.pixels.size() != image.pixels.size() || kept.image.width != image.width ||
      kept.image.height != image.height || kept.image.channels != image.channels ||
      kept.image.depth != image.depth) {
    return std::nullopt;  // the same bytes seen as another image
  }
  entries_.splice(entries_.begin(), entries_, found->second);
  return kept.ref;
}

std::optional<Image> ImageCache::image_at(const std::string& key) {
  std::lock_guard lock(mutex_);
  const auto found = by_key_.find(key);
  if (found == by_key_.end()) return std::nullopt;
  entries_.splice(entries_.begin(), entries_, found->second);
  return found->second->image;
}

void ImageCache::keep(const ImageRef& ref, const Image& image) {
  if (image.pixels.data() == nullptr) return;
  std::lock_guard lock(mutex_);
  if (const auto old = by_key_.find(ref.key); old != by_key_.end()) drop(old->second);
  if (const auto old = by_pixels_.find(image.pixels.data()); old != by_pixels_.end()) drop(old->second);
  entries_.push_front({ref, image});
  by_key_[ref.key] = entries_.begin();
  by_pixels_[image.pixels.data()] = entries_.begin();
  bytes_ += image.pixels.size();
  largest_ = std::max(largest_, image.pixels.size());
  while (bytes_ > max_bytes_locked() && entries_.size() > 1) drop(std::prev(entries_.end()));
}

std::size_t ImageCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

std::size_t ImageCache::max_bytes() const {
  std::lock_guard lock(mutex_);
  return max_bytes_locked();
}

std::size_t ImageCache::max_bytes_locked() const {
  return std::max(min_bytes_, 2 * packets_ * largest_);
}

void ImageCache::drop(Entries::iterator it) {
  by_key_.erase(it->ref.key);
  by_pixels_.erase(it->image.pixels.data());
  bytes_ -= it->image.pixels.size();
  entries_.erase(it);
}

}  // namespace micromodels::detail
