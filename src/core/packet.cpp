#include "micromodels/packet.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <optional>

namespace micromodels {

namespace {

// Buffers are allocated with new std::byte[n] (not make_shared<std::byte[]>) because an array of
// std::byte from a new-expression is aligned for any fundamental type, so Tensor::f32 and image
// code may view the bytes as floats; make_shared only promises alignof(std::byte) for the array.
std::shared_ptr<const std::byte> adopt(std::byte* raw) {
  // shared_ptr deletes `raw` itself if allocating the control block throws.
  return std::shared_ptr<const std::byte>(raw, std::default_delete<std::byte[]>());
}

// The product of non-negative factors, or nullopt when it does not fit in size_t.
std::optional<std::size_t> checked_product(std::size_t a, std::size_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::nullopt;
  return a * b;
}

std::string_view depth_name(Depth depth) noexcept {
  switch (depth) {
    case Depth::u8:
      return "u8";
    case Depth::f32:
      return "f32";
  }
  return "unknown depth";
}

}  // namespace

Buffer::Buffer(std::vector<std::byte> bytes) {
  // The vector moves into the control block's allocation; its heap array (and so every pointer
  // into it) stays where it was, which makes wrapping a vector free.
  auto owner = std::make_shared<std::vector<std::byte>>(std::move(bytes));
  size_ = owner->size();
  const std::byte* first = owner->data();
  data_ = std::shared_ptr<const std::byte>(std::move(owner), first);
}

Buffer Buffer::copy_of(const void* data, std::size_t size) {
  if (size == 0) return {};
  auto* raw = new std::byte[size];  // uninitialized: memcpy overwrites every byte
  std::memcpy(raw, data, size);
  return {adopt(raw), size};
}

Buffer Buffer::zeros(std::size_t size) {
  if (size == 0) return {};
  return {adopt(new std::byte[size]()), size};
}

std::byte* Buffer::mutable_data() {
  // An empty buffer has no bytes to protect. Otherwise another owner may be reading these bytes
  // on another thread, so writing is only safe before the first copy. use_count() is exact here:
  // a concurrent copy would need a reference to this very object, which is already a data race.
  if (data_ != nullptr && data_.use_count() != 1) {
    throw std::logic_error("Buffer::mutable_data: the bytes are shared by " +
                           std::to_string(data_.use_count()) +
                           " owners; write before sharing, or copy with Buffer::copy_of");
  }
  // The storage was created non-const (by us or by the owner that handed it over); only the
  // sharing discipline above makes it read-only.
  return const_cast<std::byte*>(data_.get());
}

std::size_t depth_size(Depth depth) noexcept {
  switch (depth) {
    case Depth::u8:
      return 1;
    case Depth::f32:
      return sizeof(float);
  }
  return 0;  // an out-of-range enum value; callers treat 0 as "not a valid depth"
}

Image Image::allocate(int width, int height, int channels, Depth depth) {
  if (width < 0 || height < 0 || channels < 0) {
    throw std::invalid_argument("Image::allocate: negative size " + std::to_string(width) + "x" +
                                std::to_string(height) + "x" + std::to_string(channels));
  }
  if (depth_size(depth) == 0) throw std::invalid_argument("Image::allocate: unknown depth");
  std::optional<std::size_t> bytes = static_cast<std::size_t>(width);
  for (std::size_t factor : {static_cast<std::size_t>(height), static_cast<std::size_t>(channels),
                             depth_size(depth)}) {
    if (bytes) bytes = checked_product(*bytes, factor);
  }
  if (!bytes) {
    throw std::length_error("Image::allocate: " + std::to_string(width) + "x" +
                            std::to_string(height) + "x" + std::to_string(channels) +
                            " does not fit in memory");
  }
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.depth = depth;
  image.pixels = Buffer::zeros(*bytes);
  return image;
}

std::size_t Tensor::element_count() const noexcept {
  // A zero dimension wins over an overflowing one: {2^40, 2^40, 0} holds no elements.
  std::size_t count = 1;
  bool overflow = false;
  for (std::int64_t dim : shape) {
    if (dim <= 0) return 0;  // negative dims are invalid; report no elements rather than garbage
    std::optional<std::size_t> next = checked_product(count, static_cast<std::size_t>(dim));
    if (!next) overflow = true;
    else count = *next;
  }
  return overflow ? std::numeric_limits<std::size_t>::max() : count;
}

const float* Tensor::f32() const {
  if (dtype != Depth::f32) {
    throw FieldError("tensor holds " + std::string(depth_name(dtype)) + " elements, not f32");
  }
  if (std::any_of(shape.begin(), shape.end(), [](std::int64_t dim) { return dim < 0; })) {
    throw FieldError("tensor has a negative dimension");
  }
  const std::size_t count = element_count();
  if (count > data.size() / sizeof(float)) {
    throw FieldError("tensor shape needs " + std::to_string(count) + " f32 elements but its buffer holds " +
                     std::to_string(data.size()) + " bytes");
  }
  // Memory shared from elsewhere (the aliasing constructor) may start at any byte.
  if (reinterpret_cast<std::uintptr_t>(data.data()) % alignof(float) != 0) {
    throw FieldError("tensor data is not aligned for f32 access");
  }
  return reinterpret_cast<const float*>(data.data());
}

const Value* Packet::find(std::string_view name) const noexcept {
  // A packet has a handful of fields; a linear scan over a vector beats any map at that size.
  for (const Field& field : fields) {
    if (field.name == name) return &field.value;
  }
  return nullptr;
}

void Packet::set(std::string_view name, Value value) {
  for (Field& field : fields) {
    if (field.name == name) {
      field.value = std::move(value);
      return;
    }
  }
  fields.push_back(Field{std::string(name), std::move(value)});
}

bool Packet::erase(std::string_view name) {
  auto it = std::find_if(fields.begin(), fields.end(),
                         [name](const Field& field) { return field.name == name; });
  if (it == fields.end()) return false;
  fields.erase(it);
  return true;
}

namespace {

std::string field_context(const Packet& packet, std::string_view name) {
  return "packet stream " + std::to_string(packet.stream) + " seq " + std::to_string(packet.seq) +
         ": field '" + std::string(name) + "'";
}

}  // namespace

void Packet::throw_missing(std::string_view name) const {
  // Listing what is present turns "missing" into a one-glance diagnosis of a misnamed field.
  std::string message = field_context(*this, name) + " is missing; fields present: ";
  if (fields.empty()) message += "(none)";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) message += ", ";
    message += fields[i].name;
  }
  throw FieldError(message);
}

void Packet::throw_wrong_type(std::string_view name, std::size_t held, std::size_t wanted) const {
  throw FieldError(field_context(*this, name) + " holds " + std::string(value_type_name(held)) +
                   ", not " + std::string(value_type_name(wanted)));
}

std::string_view value_type_name(std::size_t index) noexcept {
  static constexpr std::array<std::string_view, std::variant_size_v<Value>> kNames = {
      "image", "tensor", "rects", "points", "scalars", "int", "number", "text", "bytes"};
  return index < kNames.size() ? kNames[index] : std::string_view("unknown");
}

}  // namespace micromodels
