// The bookkeeping of at-least-once delivery, without a broker: what is delivered, what is a
// duplicate, and when an entry may be acknowledged. Redis's inlet runs on it (the redis and
// conformance tests cover it there, with crashes and leases); here each rule on its own.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "wire/delivery_ledger.hpp"

using micromodels::Ticket;
using micromodels::detail::DeliveryLedger;
using Admit = DeliveryLedger::Admit;
using Mode = DeliveryLedger::Mode;

namespace {

// What one flush would send, by partition.
std::map<std::size_t, DeliveryLedger::Progress> flush(DeliveryLedger& ledger) {
  std::map<std::size_t, DeliveryLedger::Progress> sent;
  ledger.flush([&](std::size_t part, DeliveryLedger::Progress progress) {
    sent[part] = std::move(progress);
  });
  return sent;
}

using Acks = std::vector<std::string>;
using Reached = std::vector<std::pair<std::uint32_t, std::uint64_t>>;

}  // namespace

TEST(DeliveryLedger, ASharedEntryIsOnItsWayUntilItsAcknowledgementIsConfirmed) {
  DeliveryLedger ledger(Mode::shared, 1, 1, false);
  ASSERT_EQ(ledger.admit(0, "1-0", 0, 0, 7), Admit::deliver);
  const Ticket ticket = ledger.hold(0, 0, 7, "1-0");
  EXPECT_EQ(ledger.id_of(ticket), "1-0");
  EXPECT_EQ(ledger.admit(0, "1-0", 0, 0, 7), Admit::on_its_way) << "a reclaimed copy";
  EXPECT_TRUE(flush(ledger).empty()) << "nothing settled yet";

  ledger.settle(ticket);
  const auto sent = flush(ledger);
  ASSERT_EQ(sent.size(), 1U);
  EXPECT_EQ(sent.at(0).acks, Acks{"1-0"});
  EXPECT_TRUE(sent.at(0).reached.empty()) << "a shared stage records no progress";
  EXPECT_EQ(ledger.in_flight(), Acks{"1-0"}) << "until the broker confirms the acknowledgement";
  ledger.acknowledged({"1-0"});
  EXPECT_TRUE(ledger.in_flight().empty());
  EXPECT_TRUE(flush(ledger).empty()) << "acknowledged once";
}

TEST(DeliveryLedger, ASinkDeliversEachStreamInputAndSeqOnceAndAcknowledgesTheRepeat) {
  DeliveryLedger ledger(Mode::sink, 1, 2, true);
  EXPECT_EQ(ledger.admit(0, "1-0", 3, 0, 5), Admit::deliver);
  EXPECT_EQ(ledger.admit(0, "1-1", 3, 1, 5), Admit::deliver) << "another input";
  EXPECT_EQ(ledger.admit(0, "1-2", 4, 0, 5), Admit::deliver) << "another stream";
  EXPECT_EQ(ledger.admit(0, "2-0", 3, 0, 5), Admit::duplicate) << "a stage ran twice";
  EXPECT_EQ(flush(ledger).at(0).acks, Acks{"2-0"}) << "the duplicate goes at once";

  // The dead-letter stage keeps every entry: two letters may share a (stream, seq).
  DeliveryLedger letters(Mode::sink, 1, 1, false);
  EXPECT_EQ(letters.admit(0, "1-0", 3, 0, 5), Admit::deliver);
  EXPECT_EQ(letters.admit(0, "2-0", 3, 0, 5), Admit::deliver);
}

TEST(DeliveryLedger, APartitionsEntryIsAcknowledgedOnlyOnceTheRecordedProgressPassesIt) {
  DeliveryLedger ledger(Mode::partitioned, 2, 1, true);
  EXPECT_FALSE(ledger.owned(1));
  EXPECT_TRUE(ledger.readable().empty());
  ledger.take_over(1, {});
  EXPECT_EQ(ledger.readable(), std::vector<std::size_t>{1});
  std::vector<Ticket> tickets;
  for (std::uint64_t seq = 0; seq < 3; ++seq) {
    const std::string id = "e" + std::to_string(seq);
    ASSERT_EQ(ledger.admit(1, id, 0, 0, seq), Admit::deliver);
    tickets.push_back(ledger.hold(1, 0, seq, id));
  }
  // Seq 2 settles first (a skip that ordering released at once), then seq 0.
  ledger.settle(tickets[2]);
  ledger.settle(tickets[0]);
  auto sent = flush(ledger);
  ASSERT_EQ(sent.size(), 1U);
  EXPECT_EQ(sent.at(1).reached, (Reached{{0, 1}}));
  EXPECT_EQ(sent.at(1).acks, Acks{"e0"}) << "e2 waits: a new owner starts at 1 and must find it";
  EXPECT_TRUE(ledger.in_flight().empty()) << "a partition's entries are ours by lease";

  ledger.settle(tickets[1]);
  sent = flush(ledger);
  EXPECT_EQ(sent.at(1).reached, (Reached{{0, 3}}));
  EXPECT_EQ(sent.at(1).acks, (Acks{"e1", "e2"}));
}

TEST(DeliveryLedger, ANewOwnerGoesOnFromTheRecordedProgressOnEveryInput) {
  DeliveryLedger ledger(Mode::partitioned, 1, 2, true);
  ledger.take_over(0, {{3, 10}});
  EXPECT_EQ(ledger.admit(0, "old", 3, 1, 9), Admit::duplicate) << "settled by the former owner";
  EXPECT_EQ(ledger.admit(0, "new", 3, 1, 10), Admit::deliver);
  const auto sent = flush(ledger);
  EXPECT_TRUE(sent.at(0).reached.empty()) << "nothing new settled";
  EXPECT_EQ(sent.at(0).acks, Acks{"old"}) << "below the recorded progress: acknowledged";
  EXPECT_TRUE(ledger.complete({{3, 10}})) << "every seq below the progress counts as settled";
  EXPECT_FALSE(ledger.complete({{3, 11}}));
}

TEST(DeliveryLedger, ASettleFromAnEarlierOwnershipIsVoid) {
  DeliveryLedger ledger(Mode::partitioned, 1, 1, true);
  ledger.take_over(0, {});
  ASSERT_EQ(ledger.admit(0, "a", 5, 0, 0), Admit::deliver);
  const Ticket ticket = ledger.hold(0, 5, 0, "a");
  ledger.lose(0);
  EXPECT_TRUE(ledger.lost(0));
  EXPECT_TRUE(ledger.readable().empty()) << "a lost lease is not read";
  EXPECT_EQ(ledger.give_up(0), (std::set<std::uint32_t>{5})) << "the streams the engine forgets";
  EXPECT_EQ(ledger.give_up(0), std::nullopt) << "not ours any more";
  EXPECT_FALSE(ledger.lost(0));

  ledger.take_over(0, {});  // ours again, afresh
  ledger.settle(ticket);    // the former ownership's delivery ends now
  EXPECT_TRUE(flush(ledger).empty()) << "the new owner runs it again; nothing is recorded";
  EXPECT_EQ(ledger.admit(0, "a", 5, 0, 0), Admit::deliver) << "delivered again";
}

TEST(DeliveryLedger, AMergedTicketSettlesEveryFrameWithItsKeys) {
  DeliveryLedger ledger(Mode::sink, 1, 2, true);
  const Ticket left = ledger.hold(0, 1, 4, "l");
  const Ticket right = ledger.hold(0, 1, 4, "r");
  ledger.keep_key(left, "img:a");
  ledger.keep_key(right, "img:b");
  EXPECT_EQ(ledger.merge(left, right), left);
  EXPECT_EQ(ledger.unsettled(), 1U);
  std::vector<std::string> keys;
  int frames = 0;
  ledger.settle(left, [&](std::uint32_t stream, std::uint64_t seq, std::vector<std::string> k) {
    EXPECT_EQ(stream, 1U);
    EXPECT_EQ(seq, 4U);
    keys.insert(keys.end(), k.begin(), k.end());
    ++frames;
  });
  EXPECT_EQ(frames, 2);
  EXPECT_EQ(keys, (Acks{"img:a", "img:b"}));
  EXPECT_EQ(ledger.unsettled(), 0U);
  auto acks = flush(ledger).at(0).acks;
  std::sort(acks.begin(), acks.end());
  EXPECT_EQ(acks, (Acks{"l", "r"}));
}

TEST(DeliveryLedger, ASinkIsCompleteOnceEverySeqOfEveryStreamSettled) {
  DeliveryLedger ledger(Mode::sink, 1, 1, true);
  std::vector<Ticket> tickets;
  for (std::uint64_t seq = 0; seq < 3; ++seq) tickets.push_back(ledger.hold(0, 0, seq, "x"));
  EXPECT_TRUE(ledger.complete({{0, 0}})) << "an empty stream";
  ledger.settle(tickets[0]);
  ledger.settle(tickets[2]);
  EXPECT_FALSE(ledger.complete({{0, 3}}));
  ledger.settle(tickets[1]);
  EXPECT_TRUE(ledger.complete({{0, 3}}));
  EXPECT_FALSE(ledger.complete({{0, 3}, {1, 1}})) << "a stream it has not seen";
  ledger.forget_run();
  EXPECT_FALSE(ledger.complete({{0, 3}})) << "a new run starts from nothing";
}

// The engine settles on its threads while the keeper flushes and the inlet reads: every entry
// is acknowledged exactly once (run under TSan in CI).
TEST(DeliveryLedger, SettlesFromManyThreadsWhileFlushingAcknowledgeEachEntryOnce) {
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  DeliveryLedger ledger(Mode::sink, 1, 1, true);
  std::vector<std::vector<Ticket>> tickets(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      const auto seq = static_cast<std::uint64_t>(t * kEach + i);
      const std::string id = std::to_string(seq);
      ASSERT_EQ(ledger.admit(0, id, 0, 0, seq), Admit::deliver);
      tickets[t].push_back(ledger.hold(0, 0, seq, id));
    }
  }
  std::set<std::string> acked;
  std::size_t sent = 0;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (Ticket ticket : tickets[t]) ledger.settle(ticket);
      --running;
    });
  }
  const auto take = [&] {
    for (auto& [part, progress] : flush(ledger)) {
      sent += progress.acks.size();
      acked.insert(progress.acks.begin(), progress.acks.end());
      ledger.acknowledged(progress.acks);
    }
  };
  while (running.load() > 0) take();
  for (std::thread& thread : threads) thread.join();
  take();
  EXPECT_EQ(sent, std::size_t{kThreads * kEach});
  EXPECT_EQ(acked.size(), std::size_t{kThreads * kEach});
  EXPECT_TRUE(ledger.in_flight().empty());
  EXPECT_TRUE(ledger.complete({{0, kThreads * kEach}}));
}
