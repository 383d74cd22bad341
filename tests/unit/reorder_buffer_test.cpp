// The reorder buffer on its own: what it releases, in which order, and what it holds, for
// packets and skips given by hand (the conformance suite checks it inside the engine).
#include "runtime/reorder_buffer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace micromodels::detail {
namespace {

// Records what the buffer releases as "P stream:seq" (a packet), "S stream:seq" (a skip) and
// "T ticket" (a ticket settled without going on); `room` is how many packets the queue after
// still takes.
struct Recorder {
  std::vector<std::string> events;
  int room_left = 1000;
  std::int64_t held_now = 0;

  bool room() const { return room_left > 0; }
  void enqueue(Packet packet, Ticket /*ticket*/) {
    --room_left;
    events.push_back("P " + std::to_string(packet.stream) + ":" + std::to_string(packet.seq));
  }
  void skip(std::uint32_t stream, std::uint64_t seq, Ticket /*ticket*/) {
    events.push_back("S " + std::to_string(stream) + ":" + std::to_string(seq));
  }
  void settle(Ticket ticket) { events.push_back("T " + std::to_string(ticket)); }
  void held(std::int64_t change) { held_now += change; }
  void late(std::uint32_t stream, std::uint64_t seq, std::uint64_t next) {
    events.push_back("L " + std::to_string(stream) + ":" + std::to_string(seq) + " after " +
                     std::to_string(next - 1));
  }
};

Packet packet(std::uint32_t stream, std::uint64_t seq) { return Packet{.stream = stream, .seq = seq}; }

using Events = std::vector<std::string>;

TEST(ReorderBuffer, ReleasesEachStreamInSeqOrderAndTheStreamsApart) {
  ReorderBuffer buffer;
  Recorder out;
  buffer.packet(packet(0, 2), 1, out);
  buffer.packet(packet(1, 0), 2, out);  // another stream: its turn now
  buffer.packet(packet(0, 1), 3, out);
  EXPECT_EQ(out.held_now, 2);
  buffer.packet(packet(0, 0), 4, out);
  EXPECT_EQ(out.events, (Events{"P 1:0", "P 0:0", "P 0:1", "P 0:2"}));
  EXPECT_EQ(out.held_now, 0);
  EXPECT_TRUE(buffer.streams_held().empty());
}

TEST(ReorderBuffer, ASkipFillsItsGapAndASecondSkipOrALateOneIsSettled) {
  ReorderBuffer buffer;
  Recorder out;
  buffer.packet(packet(0, 2), 1, out);
  buffer.skip(0, 1, 2, out);
  buffer.skip(0, 1, 3, out);  // the same seq again, still held: its ticket is settled
  EXPECT_EQ(out.events, (Events{"T 3"}));
  buffer.packet(packet(0, 0), 4, out);
  EXPECT_EQ(out.events, (Events{"T 3", "P 0:0", "S 0:1", "P 0:2"}));
  buffer.skip(0, 0, 5, out);  // already released
  EXPECT_EQ(out.events.back(), "T 5");
}

TEST(ReorderBuffer, ASkipOfASeqThatAlsoHasAPacketGoesOnAsThePacketAlone) {
  // Both a packet and a skip for seq 1: the packet goes on, the skip's ticket is settled.
  ReorderBuffer buffer;
  Recorder out;
  buffer.packet(packet(0, 1), 1, out);
  buffer.skip(0, 1, 2, out);
  buffer.packet(packet(0, 0), 3, out);
  EXPECT_EQ(out.events, (Events{"P 0:0", "P 0:1", "T 2"}));
}

TEST(ReorderBuffer, ReleasedPacketsWaitForRoomInOrderAndNothingOvertakesThem) {
  ReorderBuffer buffer;
  Recorder out;
  out.room_left = 1;
  buffer.packet(packet(0, 1), 1, out);
  buffer.packet(packet(0, 2), 2, out);
  buffer.packet(packet(0, 0), 3, out);  // 0 goes on; 1 and 2 are released but find no room
  EXPECT_EQ(out.events, (Events{"P 0:0"}));
  EXPECT_TRUE(buffer.waiting());
  out.room_left = 2;  // room again, before the engine asked for what waits
  buffer.packet(packet(0, 3), 4, out);  // in its turn, but behind 1 and 2
  EXPECT_EQ(out.events, (Events{"P 0:0"}));
  buffer.release_waiting(out);
  EXPECT_EQ(out.events, (Events{"P 0:0", "P 0:1", "P 0:2"}));
  EXPECT_TRUE(buffer.waiting());
  out.room_left = 5;
  buffer.release_waiting(out);
  EXPECT_EQ(out.events, (Events{"P 0:0", "P 0:1", "P 0:2", "P 0:3"}));
  EXPECT_FALSE(buffer.waiting());
}

TEST(ReorderBuffer, FlushReleasesWhatIsHeldGapsAndAll) {
  ReorderBuffer buffer;
  Recorder out;
  buffer.packet(packet(0, 3), 1, out);
  buffer.skip(0, 5, 2, out);
  buffer.packet(packet(0, 7), 3, out);
  buffer.flush(out);
  EXPECT_EQ(out.events, (Events{"P 0:3", "S 0:5", "P 0:7"}));
  EXPECT_EQ(out.held_now, 0);
  buffer.packet(packet(0, 8), 4, out);  // the stream goes on after the last released seq
  EXPECT_EQ(out.events.back(), "P 0:8");
}

TEST(ReorderBuffer, ResetDropsWhatAStreamHoldsAndGoesOnAtTheGivenSeq) {
  ReorderBuffer buffer;
  Recorder out;
  out.room_left = 0;
  buffer.packet(packet(0, 0), 1, out);  // released, waiting for room
  buffer.packet(packet(0, 2), 2, out);  // held for order
  buffer.skip(0, 3, 3, out);
  buffer.packet(packet(1, 1), 4, out);  // another stream, untouched
  std::vector<Ticket> abandoned;
  const auto [dropped, held] = buffer.reset(0, 10, abandoned);
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(held, 1u);
  EXPECT_EQ(abandoned.size(), 3u);  // both packets' tickets and the skip's
  EXPECT_FALSE(buffer.waiting());
  out.room_left = 5;
  buffer.packet(packet(0, 10), 5, out);
  buffer.packet(packet(1, 0), 6, out);
  EXPECT_EQ(out.events, (Events{"P 0:10", "P 1:0", "P 1:1"}));
}

TEST(ReorderBuffer, AnExtraPacketOfAReleasedSeqGoesOnLateAndSaysSo) {
  // Several packets for one seq, the second after a later seq was released: it is not held back
  // (the README's "Not guaranteed"), and the buffer tells its owner, which warns.
  ReorderBuffer buffer;
  Recorder out;
  buffer.packet(packet(0, 0), 1, out);
  buffer.packet(packet(0, 0), 2, out);  // right after its first: in order, nothing to say
  buffer.packet(packet(0, 1), 3, out);
  buffer.packet(packet(0, 0), 4, out);
  EXPECT_EQ(out.events, (Events{"P 0:0", "P 0:0", "P 0:1", "L 0:0 after 1", "P 0:0"}));
}

TEST(ReorderBuffer, OneCallsPacketsOfASeqGoOnTogetherBeforeAnyLaterSeq) {
  // The packets one call emitted for a seq are given together: held together while an earlier
  // seq is missing, released together, and nothing later comes between them.
  ReorderBuffer buffer;
  Recorder out;
  std::vector<Packet> second{packet(0, 1), packet(0, 1), packet(0, 1)};
  buffer.packets(second, 1, out);
  buffer.packet(packet(0, 2), 2, out);
  EXPECT_EQ(out.held_now, 4);
  std::vector<Packet> first{packet(0, 0), packet(0, 0)};
  buffer.packets(first, 3, out);
  EXPECT_EQ(out.events,
            (Events{"P 0:0", "P 0:0", "P 0:1", "P 0:1", "P 0:1", "P 0:2"}));
  EXPECT_EQ(out.held_now, 0);
}

}  // namespace
}  // namespace micromodels::detail
