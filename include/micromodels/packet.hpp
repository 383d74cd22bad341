// The unit that flows through a pipeline.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace micromodels {

/// An immutable, reference-counted byte buffer. Copying a Buffer copies a pointer, never the bytes.
class Buffer {
 public:
  Buffer() = default;
  /// Takes ownership of `bytes`.
  explicit Buffer(std::vector<std::byte> bytes);
  /// Shares memory owned elsewhere (e.g. a decoder's frame): `data` keeps its owner alive
  /// through shared_ptr's aliasing constructor. Zero-copy interop with other libraries.
  Buffer(std::shared_ptr<const std::byte> data, std::size_t size) noexcept
      : data_(std::move(data)), size_(size) {}
  /// Copies `size` bytes from `data`.
  static Buffer copy_of(const void* data, std::size_t size);
  /// A zero-filled buffer of `size` bytes that the caller fills through `mutable_data()`
  /// before sharing it.
  static Buffer zeros(std::size_t size);

  [[nodiscard]] const std::byte* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::span<const std::byte> span() const noexcept { return {data(), size()}; }
  /// Write access, allowed only while this Buffer is the sole owner (right after creation);
  /// throws std::logic_error once the bytes are shared.
  [[nodiscard]] std::byte* mutable_data();

 private:
  std::shared_ptr<const std::byte> data_{};
  std::size_t size_ = 0;
};

enum class Depth : std::uint8_t { u8 = 0, f32 = 1 };
[[nodiscard]] std::size_t depth_size(Depth depth) noexcept;

/// Pixels: rows of `width * channels` elements, tightly packed, BGR order by convention.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  Depth depth = Depth::u8;
  Buffer pixels{};

  /// A zeroed image with its own buffer; fill it through `pixels.mutable_data()`.
  static Image allocate(int width, int height, int channels, Depth depth = Depth::u8);
  [[nodiscard]] std::size_t byte_size() const noexcept {
    return static_cast<std::size_t>(width) * static_cast<std::size_t>(height) *
           static_cast<std::size_t>(channels) * depth_size(depth);
  }
};

/// An N-dimensional array, row-major.
struct Tensor {
  Depth dtype = Depth::f32;
  std::vector<std::int64_t> shape{};
  Buffer data{};

  [[nodiscard]] std::size_t element_count() const noexcept;
  [[nodiscard]] const float* f32() const;  // throws unless dtype is f32
};

struct Rect {
  float x = 0;
  float y = 0;
  float width = 0;
  float height = 0;
  float score = 0;
  friend bool operator==(const Rect&, const Rect&) = default;
};

struct Point {
  float x = 0;
  float y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};

using Rects = std::vector<Rect>;
using Points = std::vector<Point>;
using Scalars = std::vector<double>;

/// The closed set of field types. The index of each alternative is part of the wire format.
using Value = std::variant<Image, Tensor, Rects, Points, Scalars, std::int64_t, double, std::string,
                           Buffer>;

/// Thrown when a field is absent or holds another type.
class FieldError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One frame (or item) of one stream, with named fields.
///
///   Packet p{.stream = 0, .seq = 42};
///   p.set("image", Image::allocate(640, 480, 3));
///   p.set("faces", Rects{{10, 20, 100, 100, 0.9f}});
///   const auto& faces = p.get<Rects>("faces");
struct Packet {
  struct Field {
    std::string name;
    Value value;
  };

  std::uint32_t stream = 0;  // which source stream
  std::uint64_t seq = 0;     // position in the stream, from 0, contiguous
  std::int64_t time_ns = 0;  // media time (a frame's timestamp in its stream)
  /// When the source produced it, on capture_clock_ns(): the engine stamps it when
  /// `Source::next` returns, unless the source set it earlier (the moment a camera frame
  /// arrived). A packet's age is the capture clock now minus this; 0: not stamped.
  std::int64_t capture_ns = 0;
  std::vector<Field> fields{};

  [[nodiscard]] bool has(std::string_view name) const noexcept { return find(name) != nullptr; }
  [[nodiscard]] const Value* find(std::string_view name) const noexcept;

  template <class T>
  [[nodiscard]] const T& get(std::string_view name) const {
    const Value* value = find(name);
    if (value == nullptr) throw_missing(name);
    const T* typed = std::get_if<T>(value);
    if (typed == nullptr) throw_wrong_type(name, value->index(), index_of<T>());
    return *typed;
  }

  /// Adds the field, or replaces the value of an existing field of that name.
  void set(std::string_view name, Value value);
  bool erase(std::string_view name);

 private:
  [[noreturn]] void throw_missing(std::string_view name) const;
  [[noreturn]] void throw_wrong_type(std::string_view name, std::size_t held,
                                     std::size_t wanted) const;
  template <class T, std::size_t I = 0>
  static constexpr std::size_t index_of() {
    if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Value>>) {
      return I;
    } else {
      return index_of<T, I + 1>();
    }
  }
};

/// The clock of `Packet::capture_ns`: std::chrono::steady_clock in nanoseconds, the same for
/// every process of a machine (CLOCK_MONOTONIC), never set back.
[[nodiscard]] inline std::int64_t capture_clock_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Name of a Value alternative ("image", "tensor", ...), for messages.
[[nodiscard]] std::string_view value_type_name(std::size_t index) noexcept;

}  // namespace micromodels
