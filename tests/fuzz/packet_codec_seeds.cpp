// Writes a few valid packet encodings into a directory, as the fuzzers' seed corpus, and with
// `--entries`, the same packets as Redis stream entries (and a skip entry, and an entry with an
// image reference and retired keys). Valid seeds let the fuzzer start from deep inside the format
// instead of rediscovering the magic and the header by mutation.
//
//   packet_codec_seeds <dir> [--entries]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "entry.hpp"
#include "image_ref.hpp"
#include "retired_keys.hpp"
#include "micromodels/packet_codec.hpp"

namespace mm = micromodels;

namespace {

mm::Packet with_header(std::uint32_t stream, std::uint64_t seq, std::int64_t time_ns) {
  mm::Packet packet;
  packet.stream = stream;
  packet.seq = seq;
  packet.time_ns = time_ns;
  return packet;
}

std::vector<mm::Packet> seed_packets() {
  std::vector<mm::Packet> packets;
  packets.push_back(with_header(0, 0, 0));

  mm::Packet frame = with_header(1, 42, 1'400'000'000);
  mm::Image image = mm::Image::allocate(4, 3, 3);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels.mutable_data()[i] = static_cast<std::byte>(i * 13);
  }
  frame.set("image", image);
  frame.set("faces", mm::Rects{{10, 20, 100, 120, 0.9f}, {5, 5, 8, 8, 0.1f}});
  frame.set("landmarks", mm::Points{{1, 2}, {3, 4}, {5, 6}});
  packets.push_back(frame);

  mm::Packet tensors = with_header(2, 7, -5);
  const float values[] = {1, 2, 3, 4, 5, 6};
  tensors.set("embedding", mm::Tensor{mm::Depth::f32, {2, 3}, mm::Buffer::copy_of(values, sizeof values)});
  tensors.set("mask", mm::Tensor{mm::Depth::u8, {2, 2, 1}, mm::Buffer::zeros(4)});
  tensors.set("float_image", mm::Image::allocate(2, 2, 1, mm::Depth::f32));
  packets.push_back(tensors);

  mm::Packet meta = with_header(3, 1, 99);
  meta.set("scores", mm::Scalars{0.5, -1.0, 1e300});
  meta.set("frame_count", std::int64_t{-12});
  meta.set("fps", 29.97);
  meta.set("codec", std::string("h264"));
  meta.set("blob", mm::Buffer::copy_of("\x00\xff\x10", 3));
  meta.set("empty_text", std::string());
  meta.set("empty_rects", mm::Rects{});
  packets.push_back(meta);
  return packets;
}

}  // namespace

int main(int argc, char** argv) {
  const bool entries = argc == 3 && std::string(argv[2]) == "--entries";
  if (argc != 2 && !entries) {
    std::fprintf(stderr, "usage: %s <corpus-dir> [--entries]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::vector<std::string> seeds;
  for (const mm::Packet& packet : seed_packets()) {
    const auto wire = mm::encode_packet(packet);
    std::string bytes(reinterpret_cast<const char*>(wire.data()), wire.size());
    if (entries) {
      bytes = mm::detail::encode_entry({.kind = mm::detail::Entry::Kind::packet,
                                        .version = 0x1234,
                                        .run = 0x5678,
                                        .stream = packet.stream,
                                        .seq = packet.seq,
                                        .input = 1},
                                       bytes);
    }
    seeds.push_back(std::move(bytes));
  }
  if (entries) {
    seeds.push_back(mm::detail::encode_entry({.kind = mm::detail::Entry::Kind::skip, .seq = 9}));
    // An image by reference, as a hop with wire.image_refs carries it (hop_codec.cpp).
    mm::Packet by_ref = with_header(1, 43, 1'400'000'000);
    const std::string ref = mm::detail::encode_ref({.key = "mm:{p}:img:5eed:0", .channels = 3,
                                                    .width = 4, .height = 3, .size = 36, .check = 7});
    by_ref.set("image", mm::Buffer::copy_of(ref.data(), ref.size()));
    by_ref.set("\x01wire:image", std::string("ref"));
    // ... and the keys its hops retired (retired_keys.hpp).
    by_ref.set(mm::detail::kRetired,
               mm::detail::encode_keys({"mm:{p:img:5eed0}", "mm:{p:img:5eed1}"}));
    const auto wire = mm::encode_packet(by_ref);
    seeds.push_back(mm::detail::encode_entry(
        {.kind = mm::detail::Entry::Kind::packet, .version = 0x1234, .run = 0x5678, .stream = 1, .seq = 43},
        std::string(reinterpret_cast<const char*>(wire.data()), wire.size())));
  }
  for (std::size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(dir / ("seed-" + std::to_string(i) + (entries ? ".entry" : ".mmpk")),
                      std::ios::binary);
    out.write(seeds[i].data(), static_cast<std::streamsize>(seeds[i].size()));
    if (!out) {
      std::fprintf(stderr, "cannot write seeds to %s\n", dir.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}
