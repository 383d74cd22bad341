// The join table on its own: which (stream, seq) it settles, with which parts, and what it
// refuses, for parts and skips given by hand (the conformance suite checks joins in the engine).
#include "runtime/join_table.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace micromodels::detail {
namespace {

Packet part(std::uint32_t stream, std::uint64_t seq, const std::string& from) {
  Packet p{.stream = stream, .seq = seq};
  p.set("from", from);
  return p;
}

using Refused = JoinTable::Refused;

TEST(JoinTable, SettlesAKeyOnceEveryInputGaveAPartWithThePartsInInputOrder) {
  JoinTable table(2);
  Refused refused = Refused::extra;
  EXPECT_FALSE(table.part(1, part(0, 5, "b"), 11, refused));
  EXPECT_EQ(refused, Refused::no);
  EXPECT_FALSE(table.part(0, part(0, 6, "a6"), 12, refused));  // another key waits on its own
  const auto done = table.part(0, part(0, 5, "a"), 13, refused);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->stream, 0u);
  EXPECT_EQ(done->seq, 5u);
  ASSERT_EQ(done->parts.size(), 2u);
  EXPECT_EQ(done->parts[0]->get<std::string>("from"), "a");
  EXPECT_EQ(done->parts[1]->get<std::string>("from"), "b");
  EXPECT_TRUE(done->complete());
  EXPECT_EQ(done->tickets, (std::vector<Ticket>{11, 13}));
  EXPECT_FALSE(table.empty());  // (0, 6) still waits
}

TEST(JoinTable, ASkipSettlesItsInputAndTheKeyGoesOnWithThePartsThatCame) {
  JoinTable table(3);
  Refused refused = Refused::no;
  bool skip_refused = false;
  EXPECT_FALSE(table.part(0, part(2, 1, "a"), 1, refused));
  EXPECT_FALSE(table.skip(2, 2, 1, 2, skip_refused));
  const auto done = table.part(1, part(2, 1, "b"), 3, refused);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->present(), 2u);
  EXPECT_FALSE(done->complete());
  EXPECT_FALSE(done->parts[2]);
  EXPECT_EQ(done->tickets.size(), 3u);
  EXPECT_TRUE(table.empty());
}

TEST(JoinTable, RefusesASecondPartOnOneInputAndAnythingAfterTheKeySettled) {
  JoinTable table(2);
  Refused refused = Refused::no;
  (void)table.part(0, part(0, 0, "a"), 1, refused);
  (void)table.part(0, part(0, 0, "again"), 2, refused);
  EXPECT_EQ(refused, Refused::extra);
  ASSERT_TRUE(table.part(1, part(0, 0, "b"), 3, refused));
  (void)table.part(1, part(0, 0, "after"), 4, refused);
  EXPECT_EQ(refused, Refused::extra) << "the key had every part: not a late one";
  bool skip_refused = false;
  (void)table.skip(0, 0, 0, 5, skip_refused);
  EXPECT_TRUE(skip_refused);
}

TEST(JoinTable, ExpireSettlesTheKeysStartedBeforeTheDeadlineAndTheirLatePartsAreRefused) {
  JoinTable table(2);
  Refused refused = Refused::no;
  (void)table.part(0, part(0, 0, "a"), 1, refused);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const JoinTable::Clock::time_point between = JoinTable::Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  (void)table.part(0, part(0, 1, "a"), 2, refused);
  std::vector<JoinTable::Done> expired = table.expire(between, false);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].seq, 0u);
  EXPECT_EQ(expired[0].present(), 1u);
  (void)table.part(1, part(0, 0, "b"), 3, refused);
  EXPECT_EQ(refused, Refused::late);  // its key timed out: nothing left to join with
  (void)table.part(1, part(0, 0, "b again"), 4, refused);
  EXPECT_EQ(refused, Refused::extra) << "the one part it waited for came already";
  expired = table.expire({}, true);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].seq, 1u);
  EXPECT_TRUE(table.empty());
}

TEST(JoinTable, ResetForgetsAStreamsKeysAndRefusesWhatIsBelowWhereItGoesOn) {
  JoinTable table(2);
  Refused refused = Refused::no;
  bool skip_refused = false;
  (void)table.part(0, part(0, 3, "a"), 1, refused);
  (void)table.skip(1, 0, 4, 2, skip_refused);
  (void)table.part(0, part(1, 3, "a"), 3, refused);  // another stream, kept
  std::vector<Ticket> abandoned;
  EXPECT_EQ(table.reset(0, 10, abandoned), 1u);
  EXPECT_EQ(abandoned, (std::vector<Ticket>{1, 2}));
  EXPECT_EQ(table.streams(), (std::vector<std::uint32_t>{1}));
  (void)table.part(0, part(0, 9, "a"), 4, refused);
  EXPECT_EQ(refused, Refused::extra);
  EXPECT_FALSE(table.part(0, part(0, 10, "a"), 5, refused));
  EXPECT_EQ(refused, Refused::no);
}

}  // namespace
}  // namespace micromodels::detail
