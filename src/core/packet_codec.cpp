// Wire format, version 2. All integers little-endian, floats as their IEEE-754 bits.
//
//   "MMPK"  u8 version  u32 stream  u64 seq  i64 time_ns  i64 capture_ns  u32 field_count
//   field:  u32 name_len  name bytes  u8 tag (index in Value)  payload
//   payload by tag:
//     0 image    i32 width  i32 height  i32 channels  u8 depth  u64 byte_len  bytes
//     1 tensor   u8 dtype  u32 ndims  i64 dims[ndims]  u64 byte_len  bytes
//     2 rects    u64 count  count x (f32 x, y, width, height, score)
//     3 points   u64 count  count x (f32 x, y)
//     4 scalars  u64 count  count x f64
//     5 int      i64
//     6 number   f64
//     7 text     u64 byte_len  bytes
//     8 bytes    u64 byte_len  bytes
//
// Every value has exactly one encoding (lengths must match shapes, depths must be known, no
// padding), so decode followed by encode reproduces the input byte for byte; the fuzz target
// checks that. Version 2 added capture_ns, as the packet holds it (the codec converts no clock).
#include "micromodels/packet_codec.hpp"

#include "detail/little_endian.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

namespace micromodels {

namespace {

constexpr std::array<char, 4> kMagic = {'M', 'M', 'P', 'K'};
constexpr std::size_t kHeaderSize = 4 + 1 + 4 + 8 + 8 + 8 + 4;
constexpr std::size_t kRectWireSize = 5 * sizeof(float);
constexpr std::size_t kPointWireSize = 2 * sizeof(float);

// Bulk arrays are memcpy'd on little-endian hosts, which needs the in-memory layout to be the
// wire layout.
static_assert(sizeof(Rect) == kRectWireSize && std::is_trivially_copyable_v<Rect>);
static_assert(sizeof(Point) == kPointWireSize && std::is_trivially_copyable_v<Point>);
static_assert(sizeof(float) == 4 && sizeof(double) == 8 && std::numeric_limits<float>::is_iec559 &&
              std::numeric_limits<double>::is_iec559);
constexpr bool kLittleEndianHost = std::endian::native == std::endian::little;

enum class Tag : std::uint8_t {
  image = 0,
  tensor = 1,
  rects = 2,
  points = 3,
  scalars = 4,
  int64 = 5,
  number = 6,
  text = 7,
  bytes = 8,
};
static_assert(std::variant_size_v<Value> == 9, "a new Value alternative needs a wire tag");

std::optional<std::size_t> checked_mul(std::size_t a, std::size_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::nullopt;
  return a * b;
}

bool valid_depth(std::uint8_t depth) noexcept {
  return depth == static_cast<std::uint8_t>(Depth::u8) || depth == static_cast<std::uint8_t>(Depth::f32);
}

// Bytes of pixel data for these dims, or nullopt for negative dims, an unknown depth or overflow.
std::optional<std::size_t> image_bytes(std::int64_t width, std::int64_t height,
                                       std::int64_t channels, std::uint8_t depth) noexcept {
  if (width < 0 || height < 0 || channels < 0 || !valid_depth(depth)) return std::nullopt;
  std::optional<std::size_t> bytes = depth_size(static_cast<Depth>(depth));
  for (std::int64_t dim : {width, height, channels}) {
    if (bytes) bytes = checked_mul(*bytes, static_cast<std::size_t>(dim));
  }
  return bytes;
}

// Same for a tensor. A zero dimension makes the tensor empty even if the other dims multiply
// past size_t, so zero is checked before overflow.
std::optional<std::size_t> tensor_bytes(const std::vector<std::int64_t>& shape, std::uint8_t dtype) noexcept {
  if (!valid_depth(dtype)) return std::nullopt;
  bool has_zero = false;
  for (std::int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    has_zero = has_zero || dim == 0;
  }
  if (has_zero) return 0;
  std::optional<std::size_t> bytes = depth_size(static_cast<Depth>(dtype));
  for (std::int64_t dim : shape) {
    if (bytes) bytes = checked_mul(*bytes, static_cast<std::size_t>(dim));
  }
  return bytes;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// ---------------------------------------------------------------------------------------------
// Encoding

// Exact encoded size of a field's payload (after the tag). Also validates what decode would
// reject, so that everything encode_packet writes decodes again.
std::size_t payload_size(const Packet::Field& field) {
  auto fail = [&](const std::string& what) -> std::size_t {
    throw CodecError("encode_packet: field '" + field.name + "': " + what);
  };
  switch (static_cast<Tag>(field.value.index())) {
    case Tag::image: {
      const auto& image = std::get<Image>(field.value);
      auto bytes = image_bytes(image.width, image.height, image.channels,
                               static_cast<std::uint8_t>(image.depth));
      if (!bytes) return fail("image has negative dims, an unknown depth or does not fit in memory");
      if (*bytes != image.pixels.size()) {
        return fail("image is " + std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                    std::to_string(image.channels) + " (" + std::to_string(*bytes) +
                    " bytes) but its buffer holds " + std::to_string(image.pixels.size()) + " bytes");
      }
      return 4 + 4 + 4 + 1 + 8 + *bytes;
    }
    case Tag::tensor: {
      const auto& tensor = std::get<Tensor>(field.value);
      if (tensor.shape.size() > std::numeric_limits<std::uint32_t>::max()) return fail("too many dims");
      auto bytes = tensor_bytes(tensor.shape, static_cast<std::uint8_t>(tensor.dtype));
      if (!bytes) return fail("tensor shape " + shape_text(tensor.shape) + " is invalid or too large");
      if (*bytes != tensor.data.size()) {
        return fail("tensor shape " + shape_text(tensor.shape) + " needs " + std::to_string(*bytes) +
                    " bytes but its buffer holds " + std::to_string(tensor.data.size()));
      }
      return 1 + 4 + 8 * tensor.shape.size() + 8 + *bytes;
    }
    case Tag::rects:
      return 8 + kRectWireSize * std::get<Rects>(field.value).size();
    case Tag::points:
      return 8 + kPointWireSize * std::get<Points>(field.value).size();
    case Tag::scalars:
      return 8 + sizeof(double) * std::get<Scalars>(field.value).size();
    case Tag::int64:
    case Tag::number:
      return 8;
    case Tag::text:
      return 8 + std::get<std::string>(field.value).size();
    case Tag::bytes:
      return 8 + std::get<Buffer>(field.value).size();
  }
  return fail("valueless field");  // a variant left empty by an exception during assignment
}

// Appends to a vector whose capacity was reserved up front, so no append reallocates.
class Writer {
 public:
  explicit Writer(std::vector<std::byte>& out) noexcept : out_(out) {}

  template <class T>
  void put(T value) {
    static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
    using Bits = std::conditional_t<sizeof(T) == 1, std::uint8_t,
                 std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
    static_assert(sizeof(Bits) == sizeof(T));
    detail::put_le(out_, std::bit_cast<Bits>(value));
  }

  void put_raw(const void* data, std::size_t size) {
    if (size == 0) return;  // data may be null for an empty buffer
    const auto* first = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), first, first + size);
  }

  // Arrays of floats or doubles: one memcpy where the host layout is the wire layout.
  template <class Element, class Component>
  void put_array(const std::vector<Element>& items) {
    if constexpr (kLittleEndianHost) {
      put_raw(items.data(), items.size() * sizeof(Element));
    } else {
      for (const Element& item : items) {
        std::array<Component, sizeof(Element) / sizeof(Component)> parts;
        std::memcpy(parts.data(), &item, sizeof(Element));
        for (Component part : parts) put(part);
      }
    }
  }

 private:
  std::vector<std::byte>& out_;
};

void put_payload(Writer& writer, const Value& value) {
  switch (static_cast<Tag>(value.index())) {
    case Tag::image: {
      const auto& image = std::get<Image>(value);
      writer.put<std::int32_t>(image.width);
      writer.put<std::int32_t>(image.height);
      writer.put<std::int32_t>(image.channels);
      writer.put(static_cast<std::uint8_t>(image.depth));
      writer.put<std::uint64_t>(image.pixels.size());
      writer.put_raw(image.pixels.data(), image.pixels.size());
      return;
    }
    case Tag::tensor: {
      const auto& tensor = std::get<Tensor>(value);
      writer.put(static_cast<std::uint8_t>(tensor.dtype));
      writer.put(static_cast<std::uint32_t>(tensor.shape.size()));
      for (std::int64_t dim : tensor.shape) writer.put(dim);
      writer.put<std::uint64_t>(tensor.data.size());
      // Tensor elements are written as stored: the format is defined as little-endian hosts see it.
      writer.put_raw(tensor.data.data(), tensor.data.size());
      return;
    }
    case Tag::rects: {
      const auto& rects = std::get<Rects>(value);
      writer.put<std::uint64_t>(rects.size());
      writer.put_array<Rect, float>(rects);
      return;
    }
    case Tag::points: {
      const auto& points = std::get<Points>(value);
      writer.put<std::uint64_t>(points.size());
      writer.put_array<Point, float>(points);
      return;
    }
    case Tag::scalars: {
      const auto& scalars = std::get<Scalars>(value);
      writer.put<std::uint64_t>(scalars.size());
      writer.put_array<double, double>(scalars);
      return;
    }
    case Tag::int64:
      writer.put(std::get<std::int64_t>(value));
      return;
    case Tag::number:
      writer.put(std::get<double>(value));
      return;
    case Tag::text: {
      const auto& text = std::get<std::string>(value);
      writer.put<std::uint64_t>(text.size());
      writer.put_raw(text.data(), text.size());
      return;
    }
    case Tag::bytes: {
      const auto& bytes = std::get<Buffer>(value);
      writer.put<std::uint64_t>(bytes.size());
      writer.put_raw(bytes.data(), bytes.size());
      return;
    }
  }
}

// Field names identify fields, so a duplicate would make one of them unreachable through find().
// Packets have a handful of fields; a linear scan per field is cheaper than building a set.
bool has_field_named(const std::vector<Packet::Field>& fields, std::size_t count, std::string_view name) {
  return std::any_of(fields.begin(), fields.begin() + static_cast<std::ptrdiff_t>(count),
                     [name](const Packet::Field& field) { return field.name == name; });
}

// ---------------------------------------------------------------------------------------------
// Decoding

// Reads from the input with every length checked against what remains before it is used.
class Reader {
 public:
  Reader(std::span<const std::byte> input, const CodecLimits& limits) noexcept
      : input_(input), limits_(limits) {}

  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }
  [[nodiscard]] std::size_t remaining() const noexcept { return input_.size() - offset_; }

  [[noreturn]] void fail_at(std::size_t offset, const std::string& what) const {
    std::string message = "decode_packet: " + what + " at offset " + std::to_string(offset);
    // Names come from the input and may be long or binary; a prefix is enough to locate the field.
    if (field_ != nullptr) message += " (field '" + std::string(field_->substr(0, 64)) + "')";
    throw CodecError(message);
  }

  // The bytes [offset, offset + size), after checking they exist.
  const std::byte* take(std::size_t size, const char* what) {
    if (size > remaining()) {
      fail_at(offset_, std::string("truncated input: ") + what + " needs " + std::to_string(size) +
                           " bytes, " + std::to_string(remaining()) + " remain");
    }
    const std::byte* first = input_.data() + offset_;
    offset_ += size;
    return first;
  }

  template <class T>
  T get(const char* what) {
    static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
    using Bits = std::conditional_t<sizeof(T) == 1, std::uint8_t,
                 std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
    return std::bit_cast<T>(detail::get_le<Bits>(take(sizeof(T), what)));
  }

  // A length or count of `unit`-byte items, checked against the limits and the remaining input
  // before anything is allocated for it. Returns the byte size.
  std::size_t get_length(const char* what, std::size_t unit) {
    const std::size_t at = offset_;
    const auto count = get<std::uint64_t>(what);
    std::optional<std::size_t> bytes;
    if constexpr (sizeof(std::size_t) < sizeof(std::uint64_t)) {
      if (count <= std::numeric_limits<std::size_t>::max()) bytes = checked_mul(static_cast<std::size_t>(count), unit);
    } else {
      bytes = checked_mul(count, unit);
    }
    if (!bytes || *bytes > limits_.max_bytes) {
      fail_at(at, std::string(what) + " " + std::to_string(count) + " exceeds the limit of " +
                      std::to_string(limits_.max_bytes) + " bytes");
    }
    if (*bytes > remaining()) {
      fail_at(at, std::string("truncated input: ") + what + " " + std::to_string(count) + " needs " +
                      std::to_string(*bytes) + " bytes, " + std::to_string(remaining()) + " remain");
    }
    return *bytes;
  }

  // Names the field being read in error messages; nullptr outside fields.
  void set_field(const std::string_view* name) noexcept { field_ = name; }
  [[nodiscard]] const CodecLimits& limits() const noexcept { return limits_; }

 private:
  std::span<const std::byte> input_;
  const CodecLimits& limits_;
  std::size_t offset_ = 0;
  const std::string_view* field_ = nullptr;
};

template <class Element, class Component>
std::vector<Element> get_array(Reader& reader, const char* what) {
  const std::size_t bytes = reader.get_length(what, sizeof(Element));
  std::vector<Element> items(bytes / sizeof(Element));
  const std::byte* first = reader.take(bytes, what);
  if constexpr (kLittleEndianHost) {
    if (bytes != 0) std::memcpy(items.data(), first, bytes);
  } else {
    for (Element& item : items) {
      std::array<Component, sizeof(Element) / sizeof(Component)> parts;
      for (Component& part : parts) {
        std::uint64_t bits = 0;
        for (std::size_t i = 0; i < sizeof(Component); ++i) bits |= std::to_integer<std::uint64_t>(*first++) << (8 * i);
        if constexpr (sizeof(Component) == 4) part = std::bit_cast<Component>(static_cast<std::uint32_t>(bits));
        else part = std::bit_cast<Component>(bits);
      }
      std::memcpy(&item, parts.data(), sizeof(Element));
    }
  }
  return items;
}

Value get_payload(Reader& reader, std::uint8_t tag, std::size_t tag_offset) {
  switch (static_cast<Tag>(tag)) {
    case Tag::image: {
      const std::size_t at = reader.offset();
      Image image;
      image.width = reader.get<std::int32_t>("image width");
      image.height = reader.get<std::int32_t>("image height");
      image.channels = reader.get<std::int32_t>("image channels");
      const auto depth = reader.get<std::uint8_t>("image depth");
      if (!valid_depth(depth)) reader.fail_at(at + 12, "unknown image depth " + std::to_string(depth));
      image.depth = static_cast<Depth>(depth);
      const auto expected = image_bytes(image.width, image.height, image.channels, depth);
      const std::string dims = std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                               std::to_string(image.channels);
      if (!expected) reader.fail_at(at, "image dims " + dims + " are negative or overflow");
      const std::size_t length_at = reader.offset();
      const std::size_t bytes = reader.get_length("image byte length", 1);
      if (bytes != *expected) {
        reader.fail_at(length_at, "image byte length " + std::to_string(bytes) + " does not match " + dims +
                                      " (" + std::to_string(*expected) + " bytes)");
      }
      image.pixels = Buffer::copy_of(reader.take(bytes, "image pixels"), bytes);
      return image;
    }
    case Tag::tensor: {
      Tensor tensor;
      const std::size_t dtype_at = reader.offset();
      const auto dtype = reader.get<std::uint8_t>("tensor dtype");
      if (!valid_depth(dtype)) reader.fail_at(dtype_at, "unknown tensor dtype " + std::to_string(dtype));
      tensor.dtype = static_cast<Depth>(dtype);
      const std::size_t ndims_at = reader.offset();
      const auto ndims = reader.get<std::uint32_t>("tensor ndims");
      if (ndims > reader.limits().max_dims) {
        reader.fail_at(ndims_at, "tensor ndims " + std::to_string(ndims) + " exceeds the limit of " +
                                     std::to_string(reader.limits().max_dims));
      }
      // max_dims may be set huge; the input, which must hold 8 bytes per dim, bounds the reserve.
      tensor.shape.reserve(std::min<std::size_t>(ndims, reader.remaining() / 8));
      for (std::uint32_t i = 0; i < ndims; ++i) {
        const std::size_t dim_at = reader.offset();
        const auto dim = reader.get<std::int64_t>("tensor dim");
        if (dim < 0) reader.fail_at(dim_at, "negative tensor dim " + std::to_string(dim));
        tensor.shape.push_back(dim);
      }
      const auto expected = tensor_bytes(tensor.shape, dtype);
      if (!expected) reader.fail_at(ndims_at, "tensor shape " + shape_text(tensor.shape) + " overflows");
      const std::size_t length_at = reader.offset();
      const std::size_t bytes = reader.get_length("tensor byte length", 1);
      if (bytes != *expected) {
        reader.fail_at(length_at, "tensor byte length " + std::to_string(bytes) + " does not match shape " +
                                      shape_text(tensor.shape) + " (" + std::to_string(*expected) + " bytes)");
      }
      tensor.data = Buffer::copy_of(reader.take(bytes, "tensor data"), bytes);
      return tensor;
    }
    case Tag::rects:
      return get_array<Rect, float>(reader, "rect count");
    case Tag::points:
      return get_array<Point, float>(reader, "point count");
    case Tag::scalars:
      return get_array<double, double>(reader, "scalar count");
    case Tag::int64:
      return reader.get<std::int64_t>("int value");
    case Tag::number:
      return reader.get<double>("number value");
    case Tag::text: {
      const std::size_t bytes = reader.get_length("text length", 1);
      const auto* first = reinterpret_cast<const char*>(reader.take(bytes, "text"));
      return std::string(first, bytes);
    }
    case Tag::bytes: {
      const std::size_t bytes = reader.get_length("bytes length", 1);
      return Buffer::copy_of(reader.take(bytes, "bytes"), bytes);
    }
  }
  reader.fail_at(tag_offset, "unknown type tag " + std::to_string(tag) + " (this build knows 0.." +
                                 std::to_string(std::variant_size_v<Value> - 1) + ")");
}

}  // namespace

std::vector<std::byte> encode_packet(const Packet& packet) {
  if (packet.fields.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw CodecError("encode_packet: too many fields");
  }
  // One pass to validate and size the output exactly, so the second pass never reallocates.
  std::size_t size = kHeaderSize;
  for (std::size_t i = 0; i < packet.fields.size(); ++i) {
    const Packet::Field& field = packet.fields[i];
    if (field.name.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw CodecError("encode_packet: field name longer than 4 GiB");
    }
    if (has_field_named(packet.fields, i, field.name)) {
      throw CodecError("encode_packet: duplicate field '" + field.name + "'");
    }
    size += 4 + field.name.size() + 1 + payload_size(field);
  }

  std::vector<std::byte> out;
  out.reserve(size);
  Writer writer(out);
  writer.put_raw(kMagic.data(), kMagic.size());
  writer.put(kPacketCodecVersion);
  writer.put(packet.stream);
  writer.put(packet.seq);
  writer.put(packet.time_ns);
  writer.put(packet.capture_ns);
  writer.put(static_cast<std::uint32_t>(packet.fields.size()));
  for (const Packet::Field& field : packet.fields) {
    writer.put(static_cast<std::uint32_t>(field.name.size()));
    writer.put_raw(field.name.data(), field.name.size());
    writer.put(static_cast<std::uint8_t>(field.value.index()));
    put_payload(writer, field.value);
  }
  return out;
}

Packet decode_packet(std::span<const std::byte> bytes, const CodecLimits& limits) {
  Reader reader(bytes, limits);
  const std::byte* magic = reader.take(kMagic.size(), "magic");
  if (std::memcmp(magic, kMagic.data(), kMagic.size()) != 0) {
    reader.fail_at(0, "bad magic (not an encoded packet; expected \"MMPK\")");
  }
  const auto version = reader.get<std::uint8_t>("version");
  if (version != kPacketCodecVersion) {
    reader.fail_at(4, "unknown version " + std::to_string(version) + " (this build reads version " +
                          std::to_string(kPacketCodecVersion) + ")");
  }
  Packet packet;
  packet.stream = reader.get<std::uint32_t>("stream");
  packet.seq = reader.get<std::uint64_t>("seq");
  packet.time_ns = reader.get<std::int64_t>("time");
  packet.capture_ns = reader.get<std::int64_t>("capture time");
  const std::size_t count_at = reader.offset();
  const auto count = reader.get<std::uint32_t>("field count");
  if (count > limits.max_fields) {
    reader.fail_at(count_at, "field count " + std::to_string(count) + " exceeds the limit of " +
                                 std::to_string(limits.max_fields));
  }
  // A field takes at least 13 bytes (name length, tag, 8-byte payload), so the input bounds
  // what is worth reserving whatever the count claims.
  packet.fields.reserve(std::min<std::size_t>(count, reader.remaining() / 13));
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t name_at = reader.offset();
    const auto name_length = reader.get<std::uint32_t>("field name length");
    if (name_length > limits.max_bytes) {
      reader.fail_at(name_at, "field name length " + std::to_string(name_length) + " exceeds the limit of " +
                                  std::to_string(limits.max_bytes) + " bytes");
    }
    const std::string_view name(reinterpret_cast<const char*>(reader.take(name_length, "field name")),
                                name_length);
    reader.set_field(&name);
    if (has_field_named(packet.fields, packet.fields.size(), name)) reader.fail_at(name_at, "duplicate field name");
    const std::size_t tag_offset = reader.offset();
    const auto tag = reader.get<std::uint8_t>("type tag");
    packet.fields.push_back(Packet::Field{std::string(name), get_payload(reader, tag, tag_offset)});
    reader.set_field(nullptr);
  }
  if (reader.remaining() != 0) {
    reader.fail_at(reader.offset(), std::to_string(reader.remaining()) + " trailing bytes after the packet");
  }
  return packet;
}

}  // namespace micromodels
