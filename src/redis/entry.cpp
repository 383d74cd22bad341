#include "entry.hpp"

#include <cstring>

namespace micromodels::detail {

namespace {

constexpr std::size_t kHeader = 2 + 1 + 1 + 8 + 8 + 4 + 8 + 2;

template <class T>
void put(std::string& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff));
  }
}

template <class T>
T get(std::string_view bytes, std::size_t at) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    value |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  }
  return static_cast<T>(value);
}

}  // namespace

std::string encode_entry(const Entry& entry, std::string_view payload) {
  std::string out;
  out.reserve(kHeader + payload.size());
  out += "mm";
  out.push_back(static_cast<char>(kEntryFormat));
  out.push_back(static_cast<char>(entry.kind));
  put(out, entry.version);
  put(out, entry.run);
  put(out, entry.stream);
  put(out, entry.seq);
  put(out, entry.input);
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
    throw EntryError("truncated entry: " + std::to_string(value.size()) + " bytes, the header alone is " +
                     std::to_string(kHeader));
  }
  Entry entry;
  const char kind = value[3];
  if (kind != static_cast<char>(Entry::Kind::packet) && kind != static_cast<char>(Entry::Kind::skip)) {
    throw EntryError("unknown entry kind '" + std::string(1, kind) + "' (expected p or s)");
  }
  entry.kind = static_cast<Entry::Kind>(kind);
  entry.version = get<std::uint64_t>(value, 4);
  entry.run = get<std::uint64_t>(value, 12);
  entry.stream = get<std::uint32_t>(value, 20);
  entry.seq = get<std::uint64_t>(value, 24);
  entry.input = get<std::uint16_t>(value, 32);
  entry.payload = value.substr(kHeader);
  if (entry.kind == Entry::Kind::skip && !entry.payload.empty()) {
    throw EntryError("a skip entry with " + std::to_string(entry.payload.size()) +
                     " bytes of packet after its header");
  }
  if (entry.kind == Entry::Kind::packet && entry.payload.empty()) {
    throw EntryError("a packet entry without its packet");
  }
  return entry;
}

}  // namespace micromodels::detail
