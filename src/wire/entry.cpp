#include "entry.hpp"

#include "core/detail/little_endian.hpp"

namespace micromodels::detail {

constexpr std::size_t kHeader = 2 + 1 + 1 + 8 + 8 + 4 + 8 + 2;

std::string encode_entry(const Entry& entry, std::string_view payload) {
  std::string out;
  out.reserve(kHeader + payload.size());
  out += "mm";
  out.push_back(static_cast<char>(kEntryFormat));
  out.push_back(static_cast<char>(entry.kind));
  put_le(out, entry.version);
  put_le(out, entry.run);
  put_le(out, entry.stream);
  put_le(out, entry.seq);
  put_le(out, entry.input);
  out.append(payload);
  return out;
}

Entry decode_entry(std::string_view value) {
  if (value.size() < 3 || value.substr(0, 2) != "mm") {
    throw EntryError("not a micromodels entry (its field 'm' does not start with \"mm\")");
  }
  const auto format = static_cast<std::uint8_t>(value[2]);
  if (format != kEntryFormat) {
    throw EntryError("entry format " + std::to_string(format) + ", this build reads format " +
                     std::to_string(kEntryFormat) + " (another micromodels version wrote it)");
  }
  if (value.size() < kHeader) {
    throw EntryError("truncated entry: " + std::to_string(value.size()) +
                     " bytes, the header alone is " + std::to_string(kHeader));
  }
  Entry entry;
  const char kind = value[3];
  if (kind != static_cast<char>(Entry::Kind::packet) &&
      kind != static_cast<char>(Entry::Kind::skip) &&
      kind != static_cast<char>(Entry::Kind::unserved)) {
    throw EntryError("unknown entry kind '" + std::string(1, kind) + "' (expected p, s or d)");
  }
  entry.kind = static_cast<Entry::Kind>(kind);
  entry.version = get_le<std::uint64_t>(value.data() + 4);
  entry.run = get_le<std::uint64_t>(value.data() + 12);
  entry.stream = get_le<std::uint32_t>(value.data() + 20);
  entry.seq = get_le<std::uint64_t>(value.data() + 24);
  entry.input = get_le<std::uint16_t>(value.data() + 32);
  entry.payload = value.substr(kHeader);
  if (entry.kind == Entry::Kind::packet && entry.payload.empty()) {
    throw EntryError("a packet entry without its packet");
  }
  return entry;
}

}  // namespace micromodels::detail
