// libFuzzer target for decode_packet: any input must either decode or throw CodecError, never
// crash, leak or hit undefined behaviour (the target is built with ASan and UBSan). What decodes
// must re-encode to the very same bytes, because the format has one encoding per packet, and
// that encoding must decode and encode again to the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "micromodels/packet_codec.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::size_t expected, std::size_t actual) {
  std::fprintf(stderr, "packet_codec_fuzz: %s (%zu bytes vs %zu bytes)\n", what, expected, actual);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  micromodels::Packet packet;
  try {
    packet = micromodels::decode_packet(input);
  } catch (const micromodels::CodecError&) {
    return 0;  // rejected input is the expected outcome for most mutations
  }
  // Any other exception escapes and libFuzzer reports it as a crash: decode promises CodecError.
  const std::vector<std::byte> first = micromodels::encode_packet(packet);
  if (first.size() != size || !std::equal(first.begin(), first.end(), input.begin())) {
    fail("re-encoding a decoded packet changed its bytes", size, first.size());
  }
  const std::vector<std::byte> second = micromodels::encode_packet(micromodels::decode_packet(first));
  if (second != first) fail("decode(encode(packet)) encodes differently", first.size(), second.size());
  return 0;
}
