// A packet as one hop carries it: the fields kept, and images raw, PNG (lossless) or JPEG.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "micromodels/packet_codec.hpp"
#include "micromodels/pipeline.hpp"
#include "hop_codec.hpp"

namespace micromodels::detail {
namespace {

Image gradient(int width, int height) {
  Image image = Image::allocate(width, height, 3);
  std::byte* p = image.pixels.mutable_data();
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        p[(static_cast<std::size_t>(y) * width + x) * 3 + c] =
            static_cast<std::byte>((x * 2 + y + c * 40) % 256);
      }
    }
  }
  return image;
}

Packet frame_packet() {
  Packet p{.stream = 3, .seq = 7, .time_ns = 11};
  p.set("frame", gradient(64, 48));
  p.set("input_frame", gradient(64, 48));
  p.set("fps", 25.0);
  return p;
}

TEST(HopCodec, OnlyTheKeptFieldsTravel) {
  const Packet back = decode_hop(encode_for_hop(frame_packet(), std::set<std::string>{"frame"}));
  EXPECT_TRUE(back.has("frame"));
  EXPECT_FALSE(back.has("input_frame"));
  EXPECT_FALSE(back.has("fps"));  // small fields too
  EXPECT_EQ(back.seq, 7u);
  EXPECT_EQ(back.stream, 3u);
  EXPECT_EQ(back.time_ns, 11);
  const Packet all = decode_hop(encode_for_hop(frame_packet(), std::nullopt));
  EXPECT_EQ(all.fields.size(), 3u);
  const Packet none = decode_hop(encode_for_hop(frame_packet(), std::set<std::string>{}));
  EXPECT_TRUE(none.fields.empty());
  EXPECT_EQ(none.seq, 7u);
}

TEST(HopCodec, RawIsTheDefaultAndExact) {
  const Packet p = frame_packet();
  const std::string wire = encode_for_hop(p, std::nullopt);
  const Packet back = decode_hop(wire);
  const Image& a = p.get<Image>("frame");
  const Image& b = back.get<Image>("frame");
  ASSERT_EQ(a.byte_size(), b.byte_size());
  EXPECT_EQ(std::memcmp(a.pixels.data(), b.pixels.data(), a.byte_size()), 0);
  EXPECT_GT(wire.size(), 2 * a.byte_size());
}

#ifdef MICROMODELS_WIRE_HAS_OPENCV
TEST(HopCodec, PngIsLosslessAndJpegIsCloseAndSmaller) {
  const Packet p = frame_packet();
  const Image& a = p.get<Image>("frame");
  const std::string raw = encode_for_hop(p, std::nullopt);
  const std::string png = encode_for_hop(p, std::nullopt, parse_wire_images("png", 90));
  const std::string jpeg = encode_for_hop(p, std::nullopt, parse_wire_images("jpeg", 90));
  const Packet from_png = decode_hop(png);
  const Image& b = from_png.get<Image>("frame");
  ASSERT_EQ(b.width, 64);
  ASSERT_EQ(b.channels, 3);
  EXPECT_EQ(std::memcmp(a.pixels.data(), b.pixels.data(), a.byte_size()), 0);
  EXPECT_EQ(from_png.fields.size(), p.fields.size());  // the markers are gone
  const Packet from_jpeg = decode_hop(jpeg);
  const Image& c = from_jpeg.get<Image>("frame");
  ASSERT_EQ(c.byte_size(), a.byte_size());
  double diff = 0;
  for (std::size_t i = 0; i < a.byte_size(); ++i) {
    diff += std::abs(static_cast<int>(a.pixels.data()[i]) - static_cast<int>(c.pixels.data()[i]));
  }
  EXPECT_LT(diff / static_cast<double>(a.byte_size()), 4.0);
  EXPECT_LT(jpeg.size(), raw.size() / 3);
}
#endif

TEST(HopCodec, BadChoicesAreConfigErrorsNamingTheValue) {
  try {
    (void)parse_wire_images("webp", 90);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'webp'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)parse_wire_images("jpeg", 0), ConfigError);
}

TEST(HopCodec, TheCommandLineOverridesThePipelineFileKeyByKey) {
  const Pipeline file = Pipeline::from_yaml_string(
      "pipeline: p\nwire: { images: raw, jpeg_quality: 70 }\nstages:\n"
      "  - { name: source, type: synthetic.source }\n");
  EXPECT_EQ(wire_images_for("", 0, file).kind, WireImages::Kind::raw);
  EXPECT_EQ(wire_images_for("", 0, file).jpeg_quality, 70);
  EXPECT_EQ(wire_images_for("", 0, Pipeline("p")).jpeg_quality, 90);
  EXPECT_EQ(wire_images_for("", 50, file).jpeg_quality, 50);
#ifdef MICROMODELS_WIRE_HAS_OPENCV
  EXPECT_EQ(wire_images_for("jpeg", 0, file).kind, WireImages::Kind::jpeg);
  EXPECT_EQ(wire_images_for("jpeg", 0, file).jpeg_quality, 70);
  Pipeline png = file;
  png.set_wire({.images = "png"});
  EXPECT_EQ(wire_images_for("", 0, png).kind, WireImages::Kind::png);
  EXPECT_EQ(wire_images_for("raw", 0, png).kind, WireImages::Kind::raw);
#endif
  // A bad value names where it came from.
  Pipeline bad = file;
  bad.set_wire({.images = "webp"});
  try {
    (void)wire_images_for("", 0, bad);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "pipeline 'p': wire.images 'webp': expected raw, png or jpeg");
  }
  try {
    (void)wire_images_for("webp", 0, file);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "--wire-images 'webp': expected raw, png or jpeg");
  }
}

TEST(HopCodec, GarbageIsACodecErrorNeverACrash) {
  EXPECT_THROW((void)decode_hop("\x01not a packet"), CodecError);
}

}  // namespace
}  // namespace micromodels::detail
