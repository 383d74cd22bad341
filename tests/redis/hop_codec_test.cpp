// A packet as one hop carries it: the fields kept, and images raw, PNG (lossless), JPEG or by
// reference (the reference format, its content check, the cache that knows unchanged images).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <limits>

#include "micromodels/packet_codec.hpp"
#include "micromodels/pipeline.hpp"
#include "hop_codec.hpp"
#include "image_cache.hpp"
#include "retired_keys.hpp"

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

TEST(HopCodec, TheCaptureTimeTravelsAsItsAge) {
  // 40 ms old when it leaves; on arrival (the same machine) its age is 40 ms and the time the
  // hop took, give or take the two clocks' readings (microseconds).
  Packet p = frame_packet();
  p.capture_ns = capture_clock_ns() - 40'000'000;
  const Packet back = decode_hop(encode_for_hop(p, std::nullopt));
  const std::int64_t age = capture_clock_ns() - back.capture_ns;
  EXPECT_GE(age, 39'000'000);
  EXPECT_LT(age, 40'000'000 + 5'000'000'000) << "within the test's own time";
  EXPECT_LE(back.capture_ns, p.capture_ns + 1'000'000) << "the wall clock's rounding at most";
  // Not stamped stays not stamped; a sender's clock ahead of ours gives age 0, never below.
  EXPECT_EQ(decode_hop(encode_for_hop(frame_packet(), std::nullopt)).capture_ns, 0);
  EXPECT_EQ(capture_to_wall(0), 0);
  EXPECT_EQ(capture_from_wall(0), 0);
  const std::int64_t ahead = capture_to_wall(capture_clock_ns()) + 3'600'000'000'000;
  const std::int64_t before = capture_clock_ns();
  const std::int64_t arrived = capture_from_wall(ahead);
  EXPECT_GE(arrived, before);
  EXPECT_LE(arrived, capture_clock_ns());
  // Any time an entry from elsewhere carries is read without overflow (found by the entry
  // fuzzer): the far past is as old as can be, the far future is new.
  const std::int64_t lowest = std::numeric_limits<std::int64_t>::min();
  const std::int64_t highest = std::numeric_limits<std::int64_t>::max();
  const std::int64_t ancient = before - 9'000'000'000'000'000'000;  // 285 years before now
  EXPECT_LT(capture_from_wall(lowest + 1), ancient);
  EXPECT_LT(capture_from_wall(-9'223'318'160'785'014'784), ancient);
  EXPECT_GE(capture_from_wall(highest), before);
  EXPECT_GT(capture_to_wall(lowest + 1), lowest) << "a capture time of the far past";
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

// A store without Redis: what a transport's store does, in memory.
class MemoryRefs final : public ImageRefs {
 public:
  ImageRef reference(const Image& image, std::uint64_t& stored) override {
    if (std::optional<ImageRef> known = cache.ref_of(image)) {
      carried.push_back(known->key);
      return *known;
    }
    const PackedImage packed = pack_image(image, {});
    ImageRef ref{.key = "k" + std::to_string(keys.size()), .channels = image.channels,
                 .width = image.width, .height = image.height, .size = packed.bytes.size(),
                 .check = content_check(packed.bytes.span())};
    keys.push_back(packed.bytes);
    cache.keep(ref, image);
    stored += ref.size;
    return ref;
  }
  void carry(const ImageRef& ref) override { carried.push_back(ref.key); }
  bool retires() const override { return retiring; }

  ImageCache cache{1 << 20};
  std::vector<Buffer> keys;
  std::vector<std::string> carried;
  bool retiring = false;  // as a Redis store with one source
};

TEST(ImageRefs, AReferenceRoundTripsAndGarbageIsACodecError) {
  const ImageRef ref{.key = "mm:{p}:img:ab:1", .encoding = WireImages::Kind::png, .channels = 3,
                     .width = 640, .height = 360, .size = 123456, .check = 0x0123456789abcdefull};
  const std::string bytes = encode_ref(ref);
  EXPECT_LT(bytes.size(), 60u);
  const ImageRef back = decode_ref(std::as_bytes(std::span(bytes.data(), bytes.size())));
  EXPECT_EQ(back.key, ref.key);
  EXPECT_EQ(back.encoding, ref.encoding);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.width, 640);
  EXPECT_EQ(back.height, 360);
  EXPECT_EQ(back.size, ref.size);
  EXPECT_EQ(back.check, ref.check);
  for (std::size_t cut = 0; cut <= 30; ++cut) {  // truncated: the header alone, or less
    EXPECT_THROW((void)decode_ref(std::as_bytes(std::span(bytes.data(), cut))), CodecError) << cut;
  }
  std::string wrong = bytes;
  wrong[3] = 9;  // encoding 9
  EXPECT_THROW((void)decode_ref(std::as_bytes(std::span(wrong.data(), wrong.size()))), CodecError);
}

TEST(ImageRefs, StoredBytesThatAreNotTheReferencedOnesAreRefused) {
  const Image image = gradient(64, 48);
  const ImageRef ref{.key = "k", .channels = 3, .width = 64, .height = 48, .size = image.byte_size(),
                     .check = content_check(image.pixels.span())};
  const Image back = unpack_image(Buffer::copy_of(image.pixels.data(), image.byte_size()), ref);
  EXPECT_EQ(std::memcmp(back.pixels.data(), image.pixels.data(), image.byte_size()), 0);
  std::vector<std::byte> changed(image.pixels.data(), image.pixels.data() + image.byte_size());
  changed[1000] ^= std::byte{1};  // one bit
  try {
    (void)unpack_image(Buffer(changed), ref);
    ADD_FAILURE() << "a changed byte went unnoticed";
  } catch (const CodecError& e) {
    EXPECT_NE(std::string(e.what()).find("at key k"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)unpack_image(Buffer::copy_of(image.pixels.data(), 100), ref), CodecError);
}

TEST(ImageRefs, AnUnchangedImageKeepsItsReferenceAndAChangedOneIsStoredOnce) {
  MemoryRefs refs;
  Packet p = frame_packet();
  std::uint64_t stored = 0;
  Packet hop1 = decode_hop(encode_for_hop(p, std::set<std::string>{"frame", "fps"}, {}, &refs, &stored));
  EXPECT_EQ(stored, 64u * 48u * 3u);
  EXPECT_EQ(refs.keys.size(), 1u);
  // On the other side: the frame is a reference until fetched; fps travels as it is.
  const auto waiting = references(hop1);
  ASSERT_EQ(waiting.size(), 1u);
  EXPECT_EQ(waiting[0].first, "frame");
  EXPECT_EQ(hop1.get<double>("fps"), 25.0);
  // Not fetched: the reference goes on as it came, its key kept alive (carried).
  stored = 0;
  Packet hop2 = decode_hop(encode_for_hop(hop1, std::nullopt, {}, &refs, &stored));
  EXPECT_EQ(stored, 0u);
  EXPECT_EQ(refs.carried, std::vector<std::string>{"k0"});
  // Fetched (here: the stored bytes) and passed on unchanged: the same reference, nothing stored.
  resolve(hop2, "frame", unpack_image(refs.keys[0], waiting[0].second));
  EXPECT_TRUE(references(hop2).empty());
  refs.cache.keep(waiting[0].second, hop2.get<Image>("frame"));  // what a fetch does
  Packet hop3 = decode_hop(encode_for_hop(hop2, std::nullopt, {}, &refs, &stored));
  EXPECT_EQ(stored, 0u);
  EXPECT_EQ(refs.keys.size(), 1u);
  // A stage writes a new image under the same name: a new buffer, stored once.
  hop2.set("frame", gradient(64, 48));
  Packet hop4 = decode_hop(encode_for_hop(hop2, std::nullopt, {}, &refs, &stored));
  EXPECT_EQ(stored, 64u * 48u * 3u);
  EXPECT_EQ(refs.keys.size(), 2u);
  EXPECT_EQ(references(hop4)[0].second.key, "k1");
  // And an image written over a reference that was never fetched replaces it.
  hop1.set("frame", gradient(8, 8));
  const Packet hop5 = decode_hop(encode_for_hop(hop1, std::nullopt));
  EXPECT_TRUE(references(hop5).empty());
  EXPECT_EQ(hop5.get<Image>("frame").width, 8);
}

// What an inlet does with a packet that arrived: the keys of its references (and the retired ones
// it came with) held for the outlets after the stage.
void arrive(Packet& packet, std::size_t input = 0) {
  std::vector<std::string> referred;
  for (const auto& [name, ref] : references(packet)) referred.push_back(ref.key);
  hold_keys(packet, input, referred);
}

using Keys = std::vector<std::string>;

TEST(RetiredKeys, AHopRetiresTheKeysThatNoFieldItCarriesRefersTo) {
  MemoryRefs refs;
  refs.retiring = true;
  // The source's hop: frame k0, input_frame k1 (another buffer). Nothing retired yet.
  Packet hop1 = decode_hop(
      encode_for_hop(frame_packet(), std::set<std::string>{"frame", "input_frame"}, {}, &refs));
  EXPECT_FALSE(hop1.has(kRetired));
  arrive(hop1);
  // A stage fetches the frame and writes a new one under the same name (a resize): k0 retires,
  // k1 still goes on (never fetched here), the new frame is k2.
  const auto waiting = references(hop1);
  ASSERT_EQ(waiting[0].first, "frame");
  resolve(hop1, "frame", unpack_image(refs.keys[0], waiting[0].second));
  refs.cache.keep(waiting[0].second, hop1.get<Image>("frame"));  // what a fetch does
  Packet replaced = hop1;
  replaced.set("frame", gradient(32, 24));
  Packet hop2 = decode_hop(
      encode_for_hop(replaced, std::set<std::string>{"frame", "input_frame"}, {}, &refs));
  EXPECT_EQ(take_retired(hop2), Keys{"k0"});
  EXPECT_FALSE(hop2.has(kRetired)) << "taken out: a sink never sees it";
  // A hop that carries input_frame no further retires it too.
  Packet hop2b = decode_hop(encode_for_hop(replaced, std::set<std::string>{"frame"}, {}, &refs));
  EXPECT_EQ(take_retired(hop2b), (Keys{"k0", "k1"}));
  // The same pixels under another name keep their key: k0 is not retired while a field refers
  // to it, whatever the field's name.
  Packet renamed = hop1;
  renamed.set("original", hop1.get<Image>("frame"));
  renamed.set("frame", gradient(32, 24));
  Packet hop3 = decode_hop(encode_for_hop(
      renamed, std::set<std::string>{"frame", "original", "input_frame"}, {}, &refs));
  EXPECT_TRUE(take_retired(hop3).empty());
  EXPECT_EQ(references(hop3).size(), 3u);
  // The retired keys go on hop after hop, with the ones each hop adds, until a sink takes them.
  Packet again = decode_hop(
      encode_for_hop(replaced, std::set<std::string>{"frame", "input_frame"}, {}, &refs));
  arrive(again);
  again.set("frame", gradient(16, 12));
  Packet hop5 = decode_hop(encode_for_hop(again, std::set<std::string>{"frame"}, {}, &refs));
  // k0 (retired before), k1 (dropped here), k2 (the frame replaced here)
  EXPECT_EQ(take_retired(hop5), (Keys{"k0", "k1", "k2"}));
  // A hop into a stage that reads everything carries the list as the list, not as a field.
  const Packet all = decode_hop(encode_for_hop(again, std::nullopt, {}, &refs));
  std::size_t lists = 0;
  for (const Packet::Field& f : all.fields) lists += is_retired_field(f.name) ? 1 : 0;
  EXPECT_EQ(lists, 1u);
  // Without retiring (several sources, or an in-memory run), no hop carries a list.
  refs.retiring = false;
  EXPECT_FALSE(decode_hop(encode_for_hop(again, std::nullopt, {}, &refs)).has(kRetired));
  EXPECT_FALSE(decode_hop(encode_for_hop(again, std::nullopt)).has(kRetired));
}

TEST(RetiredKeys, AJoinKeepsTheKeysOfEveryPart) {
  Packet a;
  a.set("frame", Buffer());  // fields of its own besides the list
  hold_keys(a, 0, {"a1", "shared"});
  Packet b;
  hold_keys(b, 1, {"b1", "shared"});
  // The engine merges the parts by name, a later input's field over an earlier one's.
  for (Packet::Field& f : b.fields) a.set(f.name, std::move(f.value));
  EXPECT_EQ(held_keys(a), (std::set<std::string>{"a1", "b1", "shared"}));
  EXPECT_EQ(take_retired(a), (Keys{"a1", "b1", "shared"}));
  EXPECT_EQ(a.fields.size(), 1u);
}

TEST(RetiredKeys, AListThatDoesNotDecodeIsACodecErrorSayingSo) {
  const Buffer list = encode_keys({"mm:{p:img:1}", "mm:{p:img:2}"});
  EXPECT_EQ(list.size(), 2u * (2 + 12));
  EXPECT_EQ(decode_keys(list.span()), (Keys{"mm:{p:img:1}", "mm:{p:img:2}"}));
  EXPECT_TRUE(decode_keys({}).empty());
  const auto fails = [](const Packet& packet, const std::string& says) {
    const std::vector<std::byte> bytes = encode_packet(packet);
    try {
      (void)decode_hop({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
      ADD_FAILURE() << "decoded: " << says;
    } catch (const CodecError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  Packet p{.seq = 1};
  p.set(kRetired, Buffer::copy_of(list.data(), list.size() - 1));  // the last key cut short
  fails(p, "retired image keys: a key of 12 bytes at byte 16 of 27 runs past the list's end");
  p.set(kRetired, Buffer::copy_of("\x05", 1));
  fails(p, "retired image keys: 1 byte left at byte 0 of 1");
  p.set(kRetired, Buffer::copy_of("\x00\x00", 2));
  fails(p, "a key is never empty");
  p.set(kRetired, std::string("mm:{p:img:1}"));
  fails(p, "retired image keys: field is not a list of keys");
  p.erase(kRetired);
  p.set(std::string(kRetired) + ":3", Buffer::copy_of("\x09\x00" "ab", 4));  // any input's field
  fails(p, "runs past the list's end");
}

TEST(ImageRefs, TheCacheKnowsOnlyTheVeryBufferItKeptAndStaysWithinItsBytes) {
  ImageCache cache(3 * 64 * 48 * 3);
  const Image a = gradient(64, 48);
  const ImageRef ref{.key = "a", .channels = 3, .width = 64, .height = 48};
  cache.keep(ref, a);
  EXPECT_EQ(cache.ref_of(a)->key, "a");
  EXPECT_FALSE(cache.ref_of(gradient(64, 48)));  // equal pixels, another buffer: not known
  Image reshaped = a;
  reshaped.width = 48;
  reshaped.height = 64;
  EXPECT_FALSE(cache.ref_of(reshaped));  // the same bytes seen as another image
  for (int i = 0; i < 5; ++i) {
    cache.keep({.key = "b" + std::to_string(i), .channels = 3, .width = 64, .height = 48}, gradient(64, 48));
  }
  EXPECT_LE(cache.bytes(), 3u * 64u * 48u * 3u);
  EXPECT_FALSE(cache.image_at("a"));  // the least recently used went first
  EXPECT_TRUE(cache.image_at("b4"));
}

// What can be in flight sets the bound: a cache whose least bytes are below one image still keeps
// the images of its packets in flight (two each), sized by the largest image it has kept.
TEST(ImageRefs, TheCacheKeepsTheImagesOfThePacketsInFlightWhateverItsLeastBytes) {
  ImageCache cache(1, 3);  // 3 packets in flight: 6 images
  const std::size_t image = 64 * 48 * 3;
  const auto ref = [](const std::string& key, int width, int height) {
    return ImageRef{.key = key, .channels = 3, .width = width, .height = height};
  };
  for (int i = 0; i < 6; ++i) cache.keep(ref("i" + std::to_string(i), 64, 48), gradient(64, 48));
  EXPECT_EQ(cache.max_bytes(), 6 * image);
  EXPECT_EQ(cache.bytes(), 6 * image);
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(cache.image_at("i" + std::to_string(i))) << i;
  cache.keep(ref("i6", 64, 48), gradient(64, 48));  // a seventh: the least recently used goes
  EXPECT_FALSE(cache.image_at("i0"));
  EXPECT_EQ(cache.bytes(), 6 * image);
  // A larger image raises the bound to 6 images as large: nothing else has to go for it.
  cache.keep(ref("large", 128, 96), gradient(128, 96));
  EXPECT_EQ(cache.max_bytes(), 6 * 4 * image);
  for (int i = 1; i < 7; ++i) EXPECT_TRUE(cache.image_at("i" + std::to_string(i))) << i;
  EXPECT_TRUE(cache.image_at("large"));
}

}  // namespace
}  // namespace micromodels::detail
