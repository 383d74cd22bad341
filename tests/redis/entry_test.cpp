// A stream entry's one field: header (format, kind, pipeline version, run, stream, seq, input)
// and the packet (or a skip's image keys), and what decoding says about anything else.
#include "entry.hpp"

#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "retired_keys.hpp"

namespace micromodels::detail {
namespace {

TEST(Entry, APacketEntryReadsBackAsWritten) {
  const Entry written{.kind = Entry::Kind::packet,
                      .version = 0x0123456789abcdefULL,
                      .run = 0xfedcba9876543210ULL,
                      .stream = 7,
                      .seq = 123456789012ULL,
                      .input = 1};
  const std::string value = encode_entry(written, "the packet");
  const Entry read = decode_entry(value);
  EXPECT_EQ(read.kind, Entry::Kind::packet);
  EXPECT_EQ(read.version, written.version);
  EXPECT_EQ(read.run, written.run);
  EXPECT_EQ(read.stream, 7u);
  EXPECT_EQ(read.seq, written.seq);
  EXPECT_EQ(read.input, 1u);
  EXPECT_EQ(read.payload, "the packet");
  EXPECT_EQ(encode_entry(read, read.payload), value) << "one encoding per entry";
}

TEST(Entry, ASkipEntryHasNoPacket) {
  const std::string value = encode_entry({.kind = Entry::Kind::skip, .stream = 2, .seq = 9});
  const Entry read = decode_entry(value);
  EXPECT_EQ(read.kind, Entry::Kind::skip);
  EXPECT_EQ(read.seq, 9u);
  EXPECT_TRUE(read.payload.empty());
  EXPECT_EQ(value.size(), 34u) << "a skip costs its header only";
}

TEST(Entry, ADroppedEntryIsASkipOfItsOwnKind) {
  const std::string value = encode_entry({.kind = Entry::Kind::unserved, .stream = 1, .seq = 4});
  const Entry read = decode_entry(value);
  EXPECT_EQ(read.kind, Entry::Kind::unserved);
  EXPECT_EQ(read.stream, 1u);
  EXPECT_EQ(read.seq, 4u);
  EXPECT_EQ(value.size(), 34u);
}

TEST(Entry, ASkipEntryCarriesTheImageKeysOfThePacketInItsPlace) {
  const Buffer keys = encode_keys({"mm:{p:img:1}", "mm:{p:img:2}"});
  const std::string bytes(reinterpret_cast<const char*>(keys.data()), keys.size());
  const std::string value = encode_entry({.kind = Entry::Kind::skip, .stream = 2, .seq = 9}, bytes);
  const Entry read = decode_entry(value);  // its payload is a view into `value`
  EXPECT_EQ(read.kind, Entry::Kind::skip);
  EXPECT_EQ(decode_keys(std::as_bytes(std::span(read.payload))),
            (std::vector<std::string>{"mm:{p:img:1}", "mm:{p:img:2}"}));
}

TEST(Entry, AnythingElseIsAnEntryErrorThatSaysWhat) {
  const auto error_of = [](const std::string& value) {
    try {
      (void)decode_entry(value);
    } catch (const EntryError& e) {
      return std::string(e.what());
    }
    return std::string("decoded");
  };
  EXPECT_NE(error_of("hello").find("not a micromodels entry"), std::string::npos);
  EXPECT_NE(error_of("").find("not a micromodels entry"), std::string::npos);
  std::string other = encode_entry({.kind = Entry::Kind::skip});
  other[2] = 1;
  EXPECT_NE(error_of(other).find("entry format 1, this build reads format 6"), std::string::npos)
      << error_of(other);
  EXPECT_NE(error_of(encode_entry({.kind = Entry::Kind::skip}).substr(0, 20)).find("truncated"),
            std::string::npos);
  std::string kind = encode_entry({.kind = Entry::Kind::skip});
  kind[3] = 'x';
  EXPECT_NE(error_of(kind).find("unknown entry kind 'x'"), std::string::npos);
  EXPECT_NE(error_of(encode_entry({.kind = Entry::Kind::packet})).find("without its packet"),
            std::string::npos);
}

}  // namespace
}  // namespace micromodels::detail
