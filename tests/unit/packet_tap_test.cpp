// PacketTap: a stage's packets handed to watchers only when they wait for one.
#include "micromodels/packet_tap.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

namespace micromodels {
namespace {

using namespace std::chrono_literals;

Packet frame(std::uint64_t seq, const Image& image) {
  Packet p{.stream = 0, .seq = seq};
  p.set("frame", image);
  return p;
}

// Passes packets seq 0, 1, ... into `tap` every millisecond until `done`.
class Feeder {
 public:
  Feeder(PacketTap& tap, Image image)
      : thread_([this, &tap, image] {
          for (std::uint64_t seq = 0; !done_; ++seq) {
            tap.pass(frame(seq, image));
            passed_ = seq + 1;
            std::this_thread::sleep_for(1ms);
          }
        }) {}
  ~Feeder() {
    done_ = true;
    thread_.join();
  }
  [[nodiscard]] std::uint64_t passed() const { return passed_; }

 private:
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> passed_{0};
  std::thread thread_;
};

TEST(PacketTap, KeepsNothingWhileNobodyWaits) {
  PacketTap tap;
  const Image image = Image::allocate(4, 4, 3);
  for (std::uint64_t seq = 0; seq < 100; ++seq) tap.pass(frame(seq, image));
  // A packet that passed before the watcher came is not handed to it.
  const PacketTap::Next next = tap.next(20ms);
  EXPECT_EQ(next.packet, nullptr);
  EXPECT_FALSE(next.closed);
}

TEST(PacketTap, AWatcherGetsAPacketThatPassedAfterItAsked) {
  PacketTap tap;
  const Image image = Image::allocate(8, 6, 3);
  Feeder feeder(tap, image);
  const std::uint64_t before = feeder.passed();
  const PacketTap::Next next = tap.next(5s);
  ASSERT_NE(next.packet, nullptr);
  EXPECT_FALSE(next.closed);
  EXPECT_GE(next.packet->seq + 1, before) << "an old packet was handed on";
  // The copy shares the image's pixels: no bytes were copied.
  EXPECT_EQ(next.packet->get<Image>("frame").pixels.data(), image.pixels.data());
  // A second call gets a later packet.
  const PacketTap::Next later = tap.next(5s);
  ASSERT_NE(later.packet, nullptr);
  EXPECT_GT(later.packet->seq, next.packet->seq);
}

TEST(PacketTap, WatchersWaitingTogetherGetTheSamePacket) {
  PacketTap tap;
  auto first = std::async(std::launch::async, [&] { return tap.next(5s); });
  auto second = std::async(std::launch::async, [&] { return tap.next(5s); });
  std::this_thread::sleep_for(100ms);  // both wait now
  Packet p{.stream = 3, .seq = 7};
  p.set("frame", Image::allocate(2, 2, 1));
  tap.pass(p);
  const PacketTap::Next a = first.get();
  const PacketTap::Next b = second.get();
  ASSERT_NE(a.packet, nullptr);
  ASSERT_NE(b.packet, nullptr);
  EXPECT_EQ(a.packet, b.packet) << "one copy for both";
  EXPECT_EQ(a.packet->stream, 3u);
  EXPECT_EQ(a.packet->seq, 7u);
}

TEST(PacketTap, CloseWakesTheWatchersAndEndsEveryLaterWait) {
  PacketTap tap;
  const auto start = std::chrono::steady_clock::now();
  auto waiting = std::async(std::launch::async, [&] { return tap.next(30s); });
  std::this_thread::sleep_for(50ms);
  tap.close();
  const PacketTap::Next woken = waiting.get();
  EXPECT_TRUE(woken.closed);
  EXPECT_EQ(woken.packet, nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "close did not wake the watcher";
  const PacketTap::Next after = tap.next(30s);  // returns at once
  EXPECT_TRUE(after.closed);
  tap.pass(Packet{});  // the engine may still pass packets: nothing is kept
  EXPECT_TRUE(tap.next(10ms).closed);
}

}  // namespace
}  // namespace micromodels
