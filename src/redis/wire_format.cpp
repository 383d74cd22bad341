#include "wire_format.hpp"

#include <charconv>

#include "micromodels/packet_codec.hpp"

namespace micromodels::detail {

namespace {

template <class T>
bool parse_number(std::string_view text, T& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

}  // namespace

WireEntry parse_entry(const redisReply* entry, std::string key) {
  WireEntry parsed;
  parsed.key = std::move(key);
  parsed.id = std::string(text(at(entry, 0)));
  const redisReply* fields = at(entry, 1);
  if (fields == nullptr || size(fields) == 0) {
    parsed.malformed = "entry " + parsed.id + " has no fields (deleted or not a micromodels entry)";
    return parsed;
  }
  parsed.run = std::string(text(field(fields, "r")));
  const std::string_view stream = text(field(fields, "s"));
  const std::string_view seq = text(field(fields, "q"));
  parsed.has_position = parse_number(stream, parsed.stream) && parse_number(seq, parsed.seq);
  const std::string_view kind = text(field(fields, "k"));
  if (!parsed.has_position) {
    parsed.malformed = "entry " + parsed.id + " has no valid stream/seq fields (s='" +
                       std::string(stream) + "', q='" + std::string(seq) + "')";
  } else if (kind == "t") {
    parsed.tombstone = true;
  } else if (kind == "p") {
    const redisReply* payload = field(fields, "p");
    if (payload == nullptr) {
      parsed.malformed = "entry " + parsed.id + " has no packet field 'p'";
    } else {
      parsed.payload = std::string(text(payload));
    }
  } else {
    parsed.malformed = "entry " + parsed.id + " has an unknown kind '" + std::string(kind) +
                       "' (expected p or t)";
  }
  return parsed;
}

Args xadd_args(std::string_view key, std::string_view run, std::uint32_t stream, std::uint64_t seq,
               const std::string* payload) {
  Args args{"XADD", key, "*", "r", run, "s"};
  args.add(std::uint64_t{stream}).add("q").add(seq).add("k");
  if (payload == nullptr) {
    args.add("t");
  } else {
    args.add("p").add("p").add(*payload);
  }
  return args;
}

std::string encode_for_hop(const Packet& packet, const std::optional<std::set<std::string>>& keep) {
  std::vector<std::byte> bytes;
  if (!keep) {
    bytes = encode_packet(packet);
  } else {
    Packet pruned{.stream = packet.stream, .seq = packet.seq, .time_ns = packet.time_ns};
    for (const Packet::Field& f : packet.fields) {
      // Only pixels and blobs are left behind: small fields travel anyway, since a stage may
      // read one it does not declare (video.sink takes the frame rate from `fps` when there).
      const bool heavy = std::holds_alternative<Image>(f.value) ||
                         std::holds_alternative<Tensor>(f.value) ||
                         std::holds_alternative<Buffer>(f.value);
      if (!heavy || keep->contains(f.name)) pruned.fields.push_back(f);  // buffers are shared
    }
    bytes = encode_packet(pruned);
  }
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace micromodels::detail
