#include "micromodels/packet_codec.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace mm = micromodels;

namespace {

constexpr std::size_t kHeaderSize = 37;  // magic 4, version 1, stream 4, seq 8, time 8, capture 8, count 4

// Builds wire bytes by hand, so tests state the format independently of the encoder.
class Wire {
 public:
  Wire& u8(std::uint8_t v) { return put(v, 1); }
  Wire& u32(std::uint32_t v) { return put(v, 4); }
  Wire& i32(std::int32_t v) { return put(static_cast<std::uint32_t>(v), 4); }
  Wire& u64(std::uint64_t v) { return put(v, 8); }
  Wire& i64(std::int64_t v) { return put(static_cast<std::uint64_t>(v), 8); }
  Wire& f32(float v) { return put(std::bit_cast<std::uint32_t>(v), 4); }
  Wire& text(std::string_view s) {
    for (char c : s) bytes.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Wire& zeros(std::size_t n) {
    bytes.insert(bytes.end(), n, std::byte{0});
    return *this;
  }
  // "MMPK", version, stream 0, seq 0, time 0, capture time 0, and the field count.
  Wire& header(std::uint32_t field_count, std::uint8_t version = mm::kPacketCodecVersion) {
    return text("MMPK").u8(version).u32(0).u64(0).i64(0).i64(0).u32(field_count);
  }
  Wire& field(std::string_view name, std::uint8_t tag) {
    return u32(static_cast<std::uint32_t>(name.size())).text(name).u8(tag);
  }

  std::vector<std::byte> bytes;

 private:
  Wire& put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
    return *this;
  }
};

std::string decode_error(std::span<const std::byte> bytes, const mm::CodecLimits& limits = {}) {
  try {
    (void)mm::decode_packet(bytes, limits);
  } catch (const mm::CodecError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected CodecError";
  return {};
}

std::string encode_error(const mm::Packet& packet) {
  try {
    (void)mm::encode_packet(packet);
  } catch (const mm::CodecError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected CodecError";
  return {};
}

bool same_bytes(const mm::Buffer& a, const mm::Buffer& b) {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Field-by-field equality; Packet has no operator== because Buffer equality (pointer or bytes?)
// is a choice each caller makes. Here: bytes.
void expect_same(const mm::Packet& a, const mm::Packet& b) {
  EXPECT_EQ(a.stream, b.stream);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.time_ns, b.time_ns);
  EXPECT_EQ(a.capture_ns, b.capture_ns);
  ASSERT_EQ(a.fields.size(), b.fields.size());
  for (std::size_t i = 0; i < a.fields.size(); ++i) {
    SCOPED_TRACE(a.fields[i].name);
    EXPECT_EQ(a.fields[i].name, b.fields[i].name);
    const mm::Value& x = a.fields[i].value;
    const mm::Value& y = b.fields[i].value;
    ASSERT_EQ(x.index(), y.index());
    if (const auto* image = std::get_if<mm::Image>(&x)) {
      const auto& other = std::get<mm::Image>(y);
      EXPECT_EQ(image->width, other.width);
      EXPECT_EQ(image->height, other.height);
      EXPECT_EQ(image->channels, other.channels);
      EXPECT_EQ(image->depth, other.depth);
      EXPECT_TRUE(same_bytes(image->pixels, other.pixels));
    } else if (const auto* tensor = std::get_if<mm::Tensor>(&x)) {
      const auto& other = std::get<mm::Tensor>(y);
      EXPECT_EQ(tensor->dtype, other.dtype);
      EXPECT_EQ(tensor->shape, other.shape);
      EXPECT_TRUE(same_bytes(tensor->data, other.data));
    } else if (const auto* buffer = std::get_if<mm::Buffer>(&x)) {
      EXPECT_TRUE(same_bytes(*buffer, std::get<mm::Buffer>(y)));
    } else {
      // The remaining alternatives have operator==; Image, Tensor and Buffer do not.
      std::visit(
          [&y](const auto& value) {
            using T = std::decay_t<decltype(value)>;
            if constexpr (std::equality_comparable<T>) {
              EXPECT_EQ(value, std::get<T>(y));
            }
          },
          x);
    }
  }
}

mm::Image patterned_image(int width, int height, int channels, mm::Depth depth) {
  mm::Image image = mm::Image::allocate(width, height, channels, depth);
  std::byte* pixels = image.pixels.mutable_data();
  for (std::size_t i = 0; i < image.pixels.size(); ++i) pixels[i] = static_cast<std::byte>(i * 7 + 3);
  return image;
}

mm::Tensor f32_tensor(std::vector<std::int64_t> shape) {
  mm::Tensor tensor{mm::Depth::f32, std::move(shape), {}};
  std::vector<float> values(tensor.element_count());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f - 3.0f;
  tensor.data = mm::Buffer::copy_of(values.data(), values.size() * sizeof(float));
  return tensor;
}

// One field of every type, with a few awkward values.
mm::Packet full_packet() {
  mm::Packet packet = mm::Packet{.stream = 7, .seq = 123456789, .time_ns = -42, .capture_ns = 99};
  packet.set("image", patterned_image(3, 2, 3, mm::Depth::u8));
  packet.set("float_image", patterned_image(2, 2, 1, mm::Depth::f32));
  packet.set("tensor", f32_tensor({2, 3}));
  packet.set("faces", mm::Rects{{1, 2, 3, 4, 0.5f}, {-1, -2, 30, 40, 1}});
  packet.set("landmarks", mm::Points{{0.25f, 0.75f}, {100, 200}, {-1, 1e30f}});
  packet.set("scores", mm::Scalars{0.0, -0.0, 1e-300, std::numeric_limits<double>::infinity()});
  packet.set("count", std::numeric_limits<std::int64_t>::min());
  packet.set("gain", 2.5);
  packet.set("label", std::string("caf\xc3\xa9\0x", 7));  // non-ASCII and an embedded NUL
  packet.set("blob", mm::Buffer::copy_of("\x00\x01\xff", 3));
  return packet;
}

}  // namespace

TEST(PacketCodec, EmptyPacketIsJustTheHeader) {
  mm::Packet packet = {.stream = std::numeric_limits<std::uint32_t>::max(),
                                 .seq = std::numeric_limits<std::uint64_t>::max(),
                                 .time_ns = std::numeric_limits<std::int64_t>::min(),
                                 .capture_ns = std::numeric_limits<std::int64_t>::max()};
  const auto wire = mm::encode_packet(packet);
  EXPECT_EQ(wire.size(), kHeaderSize);
  expect_same(mm::decode_packet(wire), packet);
}

TEST(PacketCodec, GoldenBytes) {
  // Pins the wire format: changing it must change kPacketCodecVersion.
  mm::Packet packet = mm::Packet{.stream = 1, .seq = 2, .time_ns = -3, .capture_ns = 6};
  packet.set("n", std::int64_t{5});
  packet.set("r", mm::Rects{{1.0f, 2.0f, 3.0f, 4.0f, 0.5f}});
  Wire expected;
  expected.text("MMPK").u8(2).u32(1).u64(2).i64(-3).i64(6).u32(2);
  expected.field("n", 5).i64(5);
  expected.field("r", 2).u64(1).f32(1.0f).f32(2.0f).f32(3.0f).f32(4.0f).f32(0.5f);
  EXPECT_EQ(mm::encode_packet(packet), expected.bytes);
  expect_same(mm::decode_packet(expected.bytes), packet);
}

TEST(PacketCodec, RoundTripEveryTypeAlone) {
  const std::vector<std::pair<std::string, mm::Value>> cases = {
      {"image", patterned_image(5, 4, 3, mm::Depth::u8)},
      {"image_f32", patterned_image(3, 3, 2, mm::Depth::f32)},
      {"image_empty", mm::Image{}},
      {"image_zero_height", mm::Image::allocate(10, 0, 3)},
      {"tensor", f32_tensor({2, 2, 2})},
      {"tensor_u8", mm::Tensor{mm::Depth::u8, {3}, mm::Buffer::copy_of("abc", 3)}},
      {"tensor_rank0", f32_tensor({})},
      {"tensor_empty", mm::Tensor{mm::Depth::f32, {0, 4}, {}}},
      // A zero dimension makes the tensor empty whatever the other dims are.
      {"tensor_zero_and_huge", mm::Tensor{mm::Depth::f32, {0, std::int64_t{1} << 62, 1 << 30}, {}}},
      {"rects", mm::Rects{{1, 2, 3, 4, 5}}},
      {"rects_empty", mm::Rects{}},
      {"points", mm::Points{{1, 2}, {3, 4}}},
      {"points_empty", mm::Points{}},
      {"scalars", mm::Scalars{1.0, 2.0, -3.5}},
      {"scalars_empty", mm::Scalars{}},
      {"int", std::int64_t{-1}},
      {"number", -0.125},
      {"text", std::string("hello")},
      {"text_empty", std::string()},
      {"bytes", mm::Buffer::copy_of("xyz", 3)},
      {"bytes_empty", mm::Buffer{}},
      {"", std::int64_t{0}},  // an empty name is still a name
  };
  for (const auto& [name, value] : cases) {
    SCOPED_TRACE(name);
    mm::Packet packet = mm::Packet{.stream = 2, .seq = 3, .time_ns = 4};
    packet.set(name, value);
    const auto wire = mm::encode_packet(packet);
    const mm::Packet back = mm::decode_packet(wire);
    expect_same(back, packet);
    EXPECT_EQ(mm::encode_packet(back), wire);
  }
}

TEST(PacketCodec, RoundTripAllTypesTogether) {
  const mm::Packet packet = full_packet();
  const auto wire = mm::encode_packet(packet);
  const mm::Packet back = mm::decode_packet(wire);
  expect_same(back, packet);
  EXPECT_EQ(back.get<std::string>("label").size(), 7u);
  EXPECT_EQ(back.get<mm::Tensor>("tensor").f32()[5], -0.5f);  // 5 * 0.5 - 3
}

TEST(PacketCodec, DecodedBuffersAreFreshCopies) {
  const mm::Packet packet = full_packet();
  const auto wire = mm::encode_packet(packet);
  const mm::Packet back = mm::decode_packet(wire);
  const std::byte* first = wire.data();
  const std::byte* last = wire.data() + wire.size();
  for (const std::byte* p : {back.get<mm::Image>("image").pixels.data(), back.get<mm::Tensor>("tensor").data.data(),
                             back.get<mm::Buffer>("blob").data()}) {
    EXPECT_TRUE(p < first || p >= last);  // outlives the input span
  }
  // Decoded floats must be usable as floats: the tensor buffer is aligned.
  EXPECT_NO_THROW((void)back.get<mm::Tensor>("tensor").f32());
}

TEST(PacketCodec, FloatBitsSurvive) {
  // NaN payloads and negative zero are kept bit for bit, not normalised.
  const double nan_payload = std::bit_cast<double>(std::uint64_t{0x7ff8'0000'dead'beef});
  const float nan_f = std::bit_cast<float>(std::uint32_t{0x7fc0'1234});
  mm::Packet packet;
  packet.set("s", mm::Scalars{nan_payload, -0.0});
  packet.set("p", mm::Points{{nan_f, -0.0f}});
  const auto wire = mm::encode_packet(packet);
  const mm::Packet back = mm::decode_packet(wire);
  const auto& scalars = back.get<mm::Scalars>("s");
  EXPECT_EQ(std::bit_cast<std::uint64_t>(scalars[0]), 0x7ff8'0000'dead'beefu);
  EXPECT_TRUE(std::signbit(scalars[1]));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(back.get<mm::Points>("p")[0].x), 0x7fc0'1234u);
  EXPECT_EQ(mm::encode_packet(back), wire);
}

TEST(PacketCodec, TruncationAtEveryOffsetIsAnError) {
  const auto wire = mm::encode_packet(full_packet());
  ASSERT_GT(wire.size(), 200u);
  for (std::size_t length = 0; length < wire.size(); ++length) {
    SCOPED_TRACE(length);
    const std::string message = decode_error(std::span(wire).first(length));
    EXPECT_NE(message.find("offset"), std::string::npos) << message;
  }
  EXPECT_NO_THROW((void)mm::decode_packet(wire));
}

TEST(PacketCodec, TruncationMessageSaysWhatAndWhere) {
  const auto wire = mm::encode_packet(mm::Packet{});
  EXPECT_EQ(decode_error(std::span(wire).first(10)),
            "decode_packet: truncated input: seq needs 8 bytes, 1 remain at offset 9");
}

TEST(PacketCodec, BadMagic) {
  auto wire = mm::encode_packet(full_packet());
  wire[1] = std::byte{'X'};
  EXPECT_EQ(decode_error(wire), "decode_packet: bad magic (not an encoded packet; expected \"MMPK\") at offset 0");
}

TEST(PacketCodec, UnknownVersion) {
  EXPECT_EQ(decode_error(Wire().header(0, 1).bytes),
            "decode_packet: unknown version 1 (this build reads version 2) at offset 4");
  EXPECT_NE(decode_error(Wire().header(0, 0).bytes).find("unknown version 0"), std::string::npos);
}

TEST(PacketCodec, UnknownTag) {
  for (std::uint8_t tag : {std::uint8_t{9}, std::uint8_t{255}}) {
    Wire wire;
    wire.header(1).field("x", tag).zeros(16);
    const std::string message = decode_error(wire.bytes);
    EXPECT_NE(message.find("unknown type tag " + std::to_string(tag)), std::string::npos) << message;
    EXPECT_NE(message.find("at offset 42"), std::string::npos) << message;  // 37 + 4 + 1
    EXPECT_NE(message.find("field 'x'"), std::string::npos) << message;
  }
}

TEST(PacketCodec, TrailingBytes) {
  auto wire = mm::encode_packet(full_packet());
  const std::size_t end = wire.size();
  wire.push_back(std::byte{0});
  wire.push_back(std::byte{0});
  EXPECT_EQ(decode_error(wire),
            "decode_packet: 2 trailing bytes after the packet at offset " + std::to_string(end));
}

TEST(PacketCodec, HugeClaimedLengthsFailBeforeAllocating) {
  // Each claims far more than the input holds; under ASan an attempt to allocate would abort.
  const std::vector<std::pair<std::uint8_t, std::uint64_t>> claims = {
      {8, std::uint64_t{1} << 62},                  // bytes
      {7, std::numeric_limits<std::uint64_t>::max()},  // text
      {2, std::numeric_limits<std::uint64_t>::max() / 10},  // rects: count * 20 overflows
      {3, std::uint64_t{1} << 61},                  // points
      {4, std::uint64_t{1} << 61},                  // scalars
  };
  for (const auto& [tag, length] : claims) {
    SCOPED_TRACE(int{tag});
    Wire wire;
    wire.header(1).field("big", tag).u64(length).zeros(8);
    const std::string message = decode_error(wire.bytes);
    EXPECT_NE(message.find("exceeds the limit"), std::string::npos) << message;
    EXPECT_NE(message.find("at offset 45"), std::string::npos) << message;  // header, name length, "big", tag
  }
  // Within the limits but past the end of the input.
  Wire wire;
  wire.header(1).field("t", 7).u64(1000).text("short");
  EXPECT_NE(decode_error(wire.bytes).find("truncated input: text length 1000 needs 1000 bytes, 5 remain"),
            std::string::npos);
  // A claimed field count larger than the input can hold.
  EXPECT_NE(decode_error(Wire().header(1000).bytes).find("truncated"), std::string::npos);
}

TEST(PacketCodec, LimitsAreEnforced) {
  mm::Packet packet;
  packet.set("blob", mm::Buffer::zeros(11));
  const auto blob = mm::encode_packet(packet);
  EXPECT_NE(decode_error(blob, {.max_bytes = 10}).find("bytes length 11 exceeds the limit of 10 bytes"),
            std::string::npos);
  EXPECT_NO_THROW((void)mm::decode_packet(blob, {.max_bytes = 11}));

  mm::Packet three;
  three.set("a", 1.0);
  three.set("b", 2.0);
  three.set("c", 3.0);
  EXPECT_NE(decode_error(mm::encode_packet(three), {.max_fields = 2})
                .find("field count 3 exceeds the limit of 2 at offset 33"),
            std::string::npos);

  mm::Packet cube;
  cube.set("t", f32_tensor({1, 2, 3}));
  EXPECT_NE(decode_error(mm::encode_packet(cube), {.max_dims = 2}).find("tensor ndims 3 exceeds the limit of 2"),
            std::string::npos);

  mm::Packet long_name;
  long_name.set(std::string(20, 'n'), 1.0);
  EXPECT_NE(decode_error(mm::encode_packet(long_name), {.max_bytes = 10}).find("field name length 20"),
            std::string::npos);
}

TEST(PacketCodec, OverflowingAndNegativeDims) {
  constexpr std::int32_t kMax = std::numeric_limits<std::int32_t>::max();
  {
    Wire wire;  // 2^31 cubed times 4 overflows 64 bits
    wire.header(1).field("img", 0).i32(kMax).i32(kMax).i32(kMax).u8(1).u64(0);
    EXPECT_NE(decode_error(wire.bytes).find("are negative or overflow"), std::string::npos);
  }
  {
    Wire wire;
    wire.header(1).field("img", 0).i32(-2).i32(2).i32(1).u8(0).u64(0);
    EXPECT_NE(decode_error(wire.bytes).find("image dims -2x2x1"), std::string::npos);
  }
  {
    Wire wire;
    wire.header(1).field("t", 1).u8(1).u32(3).i64(std::int64_t{1} << 40).i64(std::int64_t{1} << 40).i64(1 << 20).u64(0);
    EXPECT_NE(decode_error(wire.bytes).find("overflows"), std::string::npos);
  }
  {
    Wire wire;
    wire.header(1).field("t", 1).u8(1).u32(2).i64(2).i64(-1).u64(0);
    EXPECT_NE(decode_error(wire.bytes).find("negative tensor dim -1 at offset 56"), std::string::npos);
  }
}

TEST(PacketCodec, LengthsMustMatchShapes) {
  {
    Wire wire;  // 2x2x3 u8 needs 12 bytes
    wire.header(1).field("img", 0).i32(2).i32(2).i32(3).u8(0).u64(11).zeros(11);
    EXPECT_NE(decode_error(wire.bytes).find("image byte length 11 does not match 2x2x3 (12 bytes)"),
              std::string::npos);
  }
  {
    Wire wire;  // [2, 2] f32 needs 16 bytes
    wire.header(1).field("t", 1).u8(1).u32(2).i64(2).i64(2).u64(8).zeros(8);
    EXPECT_NE(decode_error(wire.bytes).find("tensor byte length 8 does not match shape [2, 2] (16 bytes)"),
              std::string::npos);
  }
  {
    Wire wire;
    wire.header(1).field("img", 0).i32(1).i32(1).i32(1).u8(7).u64(1).zeros(1);
    EXPECT_NE(decode_error(wire.bytes).find("unknown image depth 7"), std::string::npos);
  }
  {
    Wire wire;
    wire.header(1).field("t", 1).u8(2).u32(0).u64(0);
    EXPECT_NE(decode_error(wire.bytes).find("unknown tensor dtype 2"), std::string::npos);
  }
}

TEST(PacketCodec, DuplicateNamesRejected) {
  Wire wire;
  wire.header(2).field("a", 5).i64(1).field("a", 5).i64(2);
  EXPECT_NE(decode_error(wire.bytes).find("duplicate field name at offset 51 (field 'a')"), std::string::npos);

  mm::Packet packet;
  packet.fields.push_back({"a", 1.0});
  packet.fields.push_back({"a", 2.0});
  EXPECT_EQ(encode_error(packet), "encode_packet: duplicate field 'a'");
}

TEST(PacketCodec, EncodeRejectsInconsistentValues) {
  mm::Packet image_packet;
  mm::Image image = mm::Image::allocate(4, 4, 3);
  image.width = 5;  // the buffer no longer matches
  image_packet.set("img", image);
  EXPECT_NE(encode_error(image_packet).find("field 'img': image is 5x4x3 (60 bytes) but its buffer holds 48"),
            std::string::npos);

  mm::Packet negative;
  negative.set("img", mm::Image{-1, 1, 1, mm::Depth::u8, {}});
  EXPECT_NE(encode_error(negative).find("negative"), std::string::npos);

  mm::Packet tensor_packet;
  tensor_packet.set("t", mm::Tensor{mm::Depth::f32, {4}, mm::Buffer::zeros(8)});
  EXPECT_NE(encode_error(tensor_packet).find("needs 16 bytes but its buffer holds 8"), std::string::npos);

  mm::Packet bad_dtype;
  bad_dtype.set("t", mm::Tensor{static_cast<mm::Depth>(3), {}, {}});
  EXPECT_NE(encode_error(bad_dtype).find("invalid"), std::string::npos);
}

TEST(PacketCodec, RandomCorruptionNeverMisbehaves) {
  // A deterministic slice of what the fuzzer does, so plain test runs cover it too.
  const auto valid = mm::encode_packet(full_packet());
  std::mt19937 rng(12345);
  int decoded = 0;
  for (int round = 0; round < 5000; ++round) {
    auto wire = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) wire[rng() % wire.size()] = static_cast<std::byte>(rng() & 0xFF);
    try {
      const mm::Packet packet = mm::decode_packet(wire);
      ++decoded;
      ASSERT_EQ(mm::encode_packet(packet), wire) << "round " << round;  // one encoding per packet
    } catch (const mm::CodecError&) {
    }
  }
  EXPECT_GT(decoded, 0);  // flips inside pixel data still decode
}
