// What one message of a hop holds on a broker (a Redis stream entry): a packet, or a skip ("this
// (stream, seq) will never come"), stamped with the run and the pipeline version that wrote it,
// so that a reader tells another run's entries and another version's apart. Nothing in it is
// Redis's: a broker transport writes this value as its message (Redis: the entry's one field,
// `m`).
//
// The value is a fixed header and, for a packet, the packet; for a skip, the image keys the
// packet in its place held, if any:
//
//   "mm"  u8 format (6)  u8 kind ('p' packet, 's' skip, 'u' unserved)  u64 pipeline version
//   u64 run id
//   u32 stream  u64 seq  u16 input  [packet: encode_packet of the fields the hop carries]
//                                   [skip: encode_keys of the keys, or nothing]
//                                   [unserved: nothing]
//
// Integers are little-endian. One field keeps what Redis formats per entry small (the first
// format had five fields: ten bulk strings per entry read). Format 3: the packet may hold image
// references (src/wire/image_ref.hpp), which format 2's readers would take for corrupt images.
// Format 4: the packet carries its capture time (packet codec version 2, the time as wall-clock
// time: src/wire/hop_codec.hpp), which format 3's readers cannot decode. Format 4's packet may
// also hold the image keys its hops retired (src/wire/retired_keys.hpp): a reader that knows
// nothing of them takes the field for an ordinary one, which its next hop drops unless it carries
// every field, and their keys go by their TTL. Nothing goes wrong, so the format stayed 4.
// Format 5: a skip may carry the image keys of the packet it stands for (dropped, filtered or
// failed), so that they go with the frame too; format 4's readers refuse a skip with bytes.
// Format 6: an `unserved` entry, a skip the receiving stage counts as its drop, reason
// `unserved` (in live mode a source's outlet sends one in place of a packet while nobody reads
// the stage's stream).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace micromodels::detail {

inline constexpr std::uint8_t kEntryFormat = 6;
inline constexpr std::string_view kEntryField = "m";  // the Redis entry's field that holds it

/// An entry that is not ours, or not whole: `what()` says what is wrong with it.
class EntryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Entry {
  enum class Kind : char {
    packet = 'p',
    skip = 's',      // (stream, seq) will never come
    unserved = 'u',  // the same, and the receiving stage counts it as dropped, reason unserved
  };
  Kind kind = Kind::packet;
  std::uint64_t version = 0;  // Plan::version() of the pipeline that wrote it
  std::uint64_t run = 0;      // the run it belongs to
  std::uint32_t stream = 0;
  std::uint64_t seq = 0;
  std::uint16_t input = 0;     // which input of the receiving stage
  std::string_view payload{};  // the packet's bytes (a view into the decoded value)
};

/// The value of field `m`: header and payload.
[[nodiscard]] std::string encode_entry(const Entry& entry, std::string_view payload = {});

/// Reads the value of field `m`. Throws EntryError for anything else (too short, another
/// format, an unknown kind, a packet entry without its packet). The payload is not decoded here.
[[nodiscard]] Entry decode_entry(std::string_view value);

}  // namespace micromodels::detail
