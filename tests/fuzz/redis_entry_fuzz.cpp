// libFuzzer target for reading a Redis stream entry as an inlet does: the value of field `m`
// must decode (header, then the packet the hop carries, its image references and retired keys)
// or be refused with EntryError or CodecError; never a crash, leak or undefined behaviour. A
// header that decodes re-encodes to the same bytes (one encoding per entry).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "entry.hpp"
#include "hop_codec.hpp"
#include "micromodels/packet_codec.hpp"
#include "retired_keys.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  micromodels::detail::Entry entry;
  try {
    entry = micromodels::detail::decode_entry(value);
  } catch (const micromodels::detail::EntryError&) {
    return 0;
  }
  if (micromodels::detail::encode_entry(entry, entry.payload) != value) {
    std::fprintf(stderr, "redis_entry_fuzz: a decoded entry encodes differently\n");
    std::abort();
  }
  if (entry.kind == micromodels::detail::Entry::Kind::packet) {
    try {
      // As an inlet does: the images that came by reference are read too, and the retired keys.
      micromodels::Packet packet = micromodels::detail::decode_hop(entry.payload);
      (void)micromodels::detail::references(packet);
      (void)micromodels::detail::take_retired(packet);
    } catch (const micromodels::CodecError&) {
      return 0;
    }
  }
  return 0;
}
