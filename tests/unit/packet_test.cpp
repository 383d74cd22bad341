#include "micromodels/packet.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mm = micromodels;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::string field_error_message(const mm::Packet& packet, auto&& get) {
  try {
    get(packet);
  } catch (const mm::FieldError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected FieldError";
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Buffer

TEST(Buffer, DefaultIsEmpty) {
  mm::Buffer buffer;
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_TRUE(buffer.span().empty());
}

TEST(Buffer, WrapsVectorWithoutCopying) {
  auto bytes = bytes_of({1, 2, 3, 4});
  const std::byte* original = bytes.data();
  mm::Buffer buffer(std::move(bytes));
  EXPECT_EQ(buffer.data(), original);  // the vector's heap array, not a copy
  ASSERT_EQ(buffer.size(), 4u);
  EXPECT_EQ(buffer.data()[3], std::byte{4});
}

TEST(Buffer, WrapsEmptyVector) {
  mm::Buffer buffer(std::vector<std::byte>{});
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.size(), 0u);
}

TEST(Buffer, CopyOfCopiesBytes) {
  const auto source = bytes_of({9, 8, 7});
  mm::Buffer buffer = mm::Buffer::copy_of(source.data(), source.size());
  ASSERT_EQ(buffer.size(), 3u);
  EXPECT_NE(buffer.data(), source.data());
  EXPECT_EQ(std::memcmp(buffer.data(), source.data(), 3), 0);
  EXPECT_TRUE(mm::Buffer::copy_of(nullptr, 0).empty());
}

TEST(Buffer, ZerosIsZeroFilledAndAligned) {
  mm::Buffer buffer = mm::Buffer::zeros(1000);
  ASSERT_EQ(buffer.size(), 1000u);
  for (std::byte b : buffer.span()) ASSERT_EQ(b, std::byte{0});
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % alignof(std::max_align_t), 0u);
  EXPECT_TRUE(mm::Buffer::zeros(0).empty());
}

TEST(Buffer, CopiesSharePointer) {
  mm::Buffer first = mm::Buffer::zeros(16);
  mm::Buffer second = first;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(first.data(), second.data());
  EXPECT_EQ(first.size(), second.size());
}

TEST(Buffer, MutableDataOnlyWhileSoleOwner) {
  mm::Buffer buffer = mm::Buffer::zeros(4);
  buffer.mutable_data()[2] = std::byte{42};
  EXPECT_EQ(buffer.data()[2], std::byte{42});
  {
    mm::Buffer shared = buffer;
    EXPECT_THROW((void)buffer.mutable_data(), std::logic_error);
    EXPECT_THROW((void)shared.mutable_data(), std::logic_error);
  }
  // The other owner is gone, so writing is safe again.
  buffer.mutable_data()[0] = std::byte{1};
  EXPECT_EQ(buffer.data()[0], std::byte{1});
}

TEST(Buffer, MutableDataOfWrappedVector) {
  mm::Buffer buffer(bytes_of({0, 0}));
  buffer.mutable_data()[1] = std::byte{5};
  EXPECT_EQ(buffer.data()[1], std::byte{5});
  EXPECT_EQ(mm::Buffer{}.mutable_data(), nullptr);  // nothing to protect in an empty buffer
}

TEST(Buffer, SharedMemoryKeepsOwnerAlive) {
  auto frame = std::make_shared<std::vector<std::byte>>(bytes_of({1, 2, 3, 4, 5, 6}));
  std::weak_ptr<std::vector<std::byte>> watch = frame;
  // A view of bytes [2, 6) of someone else's frame, as a decoder would hand over.
  mm::Buffer view(std::shared_ptr<const std::byte>(frame, frame->data() + 2), 4);
  frame.reset();
  ASSERT_FALSE(watch.expired());
  EXPECT_EQ(view.data()[0], std::byte{3});
  view = mm::Buffer{};
  EXPECT_TRUE(watch.expired());
}

// ---------------------------------------------------------------------------------------------
// Image and Tensor

TEST(Depth, Sizes) {
  EXPECT_EQ(mm::depth_size(mm::Depth::u8), 1u);
  EXPECT_EQ(mm::depth_size(mm::Depth::f32), 4u);
  EXPECT_EQ(mm::depth_size(static_cast<mm::Depth>(7)), 0u);
}

TEST(Image, AllocateZeroed) {
  mm::Image image = mm::Image::allocate(4, 3, 2, mm::Depth::f32);
  EXPECT_EQ(image.width, 4);
  EXPECT_EQ(image.height, 3);
  EXPECT_EQ(image.channels, 2);
  EXPECT_EQ(image.depth, mm::Depth::f32);
  EXPECT_EQ(image.byte_size(), 4u * 3 * 2 * 4);
  ASSERT_EQ(image.pixels.size(), image.byte_size());
  for (std::byte b : image.pixels.span()) ASSERT_EQ(b, std::byte{0});
  image.pixels.mutable_data()[0] = std::byte{255};  // the new image owns its buffer alone
  EXPECT_EQ(image.pixels.data()[0], std::byte{255});
}

TEST(Image, AllocateEmptyAndInvalid) {
  EXPECT_TRUE(mm::Image::allocate(0, 10, 3).pixels.empty());
  EXPECT_THROW(mm::Image::allocate(-1, 10, 3), std::invalid_argument);
  EXPECT_THROW(mm::Image::allocate(10, 10, 3, static_cast<mm::Depth>(9)), std::invalid_argument);
  constexpr int kMax = std::numeric_limits<int>::max();
  EXPECT_THROW(mm::Image::allocate(kMax, kMax, kMax, mm::Depth::f32), std::length_error);
}

TEST(Tensor, ElementCount) {
  mm::Tensor tensor;
  EXPECT_EQ(tensor.element_count(), 1u);  // a rank-0 tensor is one scalar
  tensor.shape = {2, 3, 4};
  EXPECT_EQ(tensor.element_count(), 24u);
  tensor.shape = {5, 0, 7};
  EXPECT_EQ(tensor.element_count(), 0u);
  tensor.shape = {3, -1};
  EXPECT_EQ(tensor.element_count(), 0u);
  tensor.shape = {std::int64_t{1} << 40, std::int64_t{1} << 40};
  EXPECT_EQ(tensor.element_count(), std::numeric_limits<std::size_t>::max());
  tensor.shape = {std::int64_t{1} << 40, std::int64_t{1} << 40, 0};
  EXPECT_EQ(tensor.element_count(), 0u);
}

TEST(Tensor, F32ReadsElements) {
  const std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 8.0f, 9.5f};
  mm::Tensor tensor{mm::Depth::f32, {2, 3}, mm::Buffer::copy_of(values.data(), values.size() * 4)};
  const float* data = tensor.f32();
  ASSERT_NE(data, nullptr);
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(data[i], values[i]);
}

TEST(Tensor, F32RejectsWrongDtypeSmallBufferAndBadShape) {
  mm::Tensor u8{mm::Depth::u8, {4}, mm::Buffer::zeros(4)};
  EXPECT_THROW((void)u8.f32(), mm::FieldError);

  mm::Tensor small{mm::Depth::f32, {2, 3}, mm::Buffer::zeros(6 * 4 - 1)};
  EXPECT_THROW((void)small.f32(), mm::FieldError);

  mm::Tensor huge{mm::Depth::f32, {std::int64_t{1} << 40, std::int64_t{1} << 40}, mm::Buffer::zeros(16)};
  EXPECT_THROW((void)huge.f32(), mm::FieldError);

  mm::Tensor negative{mm::Depth::f32, {-4}, mm::Buffer::zeros(16)};
  EXPECT_THROW((void)negative.f32(), mm::FieldError);
}

TEST(Tensor, F32RejectsMisalignedSharedMemory) {
  auto storage = std::make_shared<std::vector<std::byte>>(17);
  mm::Tensor tensor{mm::Depth::f32, {4},
                    mm::Buffer(std::shared_ptr<const std::byte>(storage, storage->data() + 1), 16)};
  EXPECT_THROW((void)tensor.f32(), mm::FieldError);
}

// ---------------------------------------------------------------------------------------------
// Packet

TEST(Packet, SetGetFindHas) {
  mm::Packet packet = mm::Packet{.stream = 3, .seq = 7};
  packet.set("faces", mm::Rects{{10, 20, 100, 100, 0.9f}});
  packet.set("count", std::int64_t{2});
  packet.set("label", std::string("hello"));

  EXPECT_TRUE(packet.has("faces"));
  EXPECT_FALSE(packet.has("face"));
  EXPECT_EQ(packet.find("nope"), nullptr);
  ASSERT_NE(packet.find("count"), nullptr);
  EXPECT_EQ(packet.find("count")->index(), 5u);

  const auto& faces = packet.get<mm::Rects>("faces");
  ASSERT_EQ(faces.size(), 1u);
  EXPECT_EQ(faces[0], (mm::Rect{10, 20, 100, 100, 0.9f}));
  EXPECT_EQ(packet.get<std::int64_t>("count"), 2);
  EXPECT_EQ(packet.get<std::string>("label"), "hello");
}

TEST(Packet, SetReplacesInPlace) {
  mm::Packet packet;
  packet.set("a", 1.0);
  packet.set("b", 2.0);
  packet.set("a", std::string("now text"));
  ASSERT_EQ(packet.fields.size(), 2u);
  EXPECT_EQ(packet.fields[0].name, "a");  // keeps its position
  EXPECT_EQ(packet.get<std::string>("a"), "now text");
  EXPECT_EQ(packet.get<double>("b"), 2.0);
}

TEST(Packet, Erase) {
  mm::Packet packet;
  packet.set("a", 1.0);
  packet.set("b", 2.0);
  packet.set("c", 3.0);
  EXPECT_TRUE(packet.erase("b"));
  EXPECT_FALSE(packet.erase("b"));
  ASSERT_EQ(packet.fields.size(), 2u);
  EXPECT_EQ(packet.fields[0].name, "a");
  EXPECT_EQ(packet.fields[1].name, "c");
}

TEST(Packet, MissingFieldMessageListsFieldsPresent) {
  mm::Packet packet = mm::Packet{.stream = 0, .seq = 12};
  packet.set("image", mm::Image::allocate(2, 2, 3));
  packet.set("time", 0.5);
  EXPECT_EQ(field_error_message(packet, [](const mm::Packet& p) { (void)p.get<mm::Rects>("faces"); }),
            "packet stream 0 seq 12: field 'faces' is missing; fields present: image, time");

  mm::Packet empty = mm::Packet{.stream = 4, .seq = 1};
  EXPECT_EQ(field_error_message(empty, [](const mm::Packet& p) { (void)p.get<double>("x"); }),
            "packet stream 4 seq 1: field 'x' is missing; fields present: (none)");
}

TEST(Packet, WrongTypeMessageNamesHeldType) {
  mm::Packet packet = mm::Packet{.stream = 0, .seq = 12};
  packet.set("faces", mm::Points{{1, 2}});
  const std::string message =
      field_error_message(packet, [](const mm::Packet& p) { (void)p.get<mm::Rects>("faces"); });
  EXPECT_EQ(message.rfind("packet stream 0 seq 12: field 'faces' holds points, not ", 0), 0u) << message;
}

TEST(Packet, CopySharesBuffers) {
  mm::Packet packet = mm::Packet{.stream = 1, .seq = 2};
  packet.set("image", mm::Image::allocate(64, 48, 3));
  packet.set("tensor", mm::Tensor{mm::Depth::f32, {8}, mm::Buffer::zeros(32)});
  packet.set("blob", mm::Buffer::zeros(10));

  const mm::Packet copy = packet;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.get<mm::Image>("image").pixels.data(), packet.get<mm::Image>("image").pixels.data());
  EXPECT_EQ(copy.get<mm::Tensor>("tensor").data.data(), packet.get<mm::Tensor>("tensor").data.data());
  EXPECT_EQ(copy.get<mm::Buffer>("blob").data(), packet.get<mm::Buffer>("blob").data());
  // Shared pixels are read-only from now on.
  mm::Image image = packet.get<mm::Image>("image");
  EXPECT_THROW((void)image.pixels.mutable_data(), std::logic_error);
}

TEST(Packet, ValueTypeNames) {
  const std::vector<std::string> expected = {"image", "tensor", "rects", "points", "scalars",
                                             "int",   "number", "text",  "bytes"};
  ASSERT_EQ(expected.size(), std::variant_size_v<mm::Value>);
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(mm::value_type_name(i), expected[i]);
  EXPECT_EQ(mm::value_type_name(9), "unknown");
  EXPECT_EQ(mm::value_type_name(std::variant_npos), "unknown");
}
