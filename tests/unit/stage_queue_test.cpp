// A stage's queue: a per_stream stage's lane of a stream its transport took away.
#include "runtime/stage_queue.hpp"

#include <gtest/gtest.h>

namespace micromodels::detail {
namespace {

Queued queued(std::uint32_t stream, std::uint64_t seq) {
  return {.packet = Packet{.stream = stream, .seq = seq}, .ticket = stream * 100 + seq};
}

TEST(StageQueue, AClearedLaneGivesBackItsPacketsAndIsNoLongerOffered) {
  StageQueue queue(16, Overflow::block, /*per_stream=*/true);
  for (std::uint64_t seq = 0; seq < 3; ++seq) queue.push(queued(1, seq));
  for (std::uint64_t seq = 0; seq < 2; ++seq) queue.push(queued(2, seq));
  ASSERT_EQ(queue.available(), 2u);
  std::vector<Ticket> abandoned;
  EXPECT_EQ(queue.clear_lane(1, abandoned), 3u);
  EXPECT_EQ(abandoned, (std::vector<Ticket>{100, 101, 102}));
  EXPECT_EQ(queue.depth(), 2u);
  EXPECT_EQ(queue.available(), 1u) << "only stream 2's lane is left to take";
  std::vector<Queued> batch;
  EXPECT_EQ(queue.take(batch, 8), std::optional<std::uint32_t>(2));
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_EQ(queue.clear_lane(7, abandoned), 0u) << "no such lane";

  // A lane a consumer serves: what waits behind it goes; the lane is not offered again when
  // it is released.
  queue.release_lane(2);
  queue.push(queued(3, 0));
  batch.clear();
  ASSERT_EQ(queue.take(batch, 1), std::optional<std::uint32_t>(3));
  queue.push(queued(3, 1));
  queue.push(queued(3, 2));
  abandoned.clear();
  EXPECT_EQ(queue.clear_lane(3, abandoned), 2u);
  queue.release_lane(3);
  EXPECT_EQ(queue.available(), 0u);
  EXPECT_EQ(queue.depth(), 0u);
  // A queue of one lane per stream only: a shared queue has no lanes to clear.
  StageQueue shared(16, Overflow::block, /*per_stream=*/false);
  shared.push(queued(1, 0));
  EXPECT_EQ(shared.clear_lane(1, abandoned), 0u);
  EXPECT_EQ(shared.depth(), 1u);
}

}  // namespace
}  // namespace micromodels::detail
