// `synthetic.source`: numbered packets, optionally paced and with a payload, for tests and
// benchmarks without media.
#include <chrono>
#include <cstring>
#include <thread>

#include "builtin_stages.hpp"

namespace micromodels::detail {

namespace {

class SyntheticSource final : public Source {
 public:
  explicit SyntheticSource(const Params& params)
      : count_(static_cast<std::uint64_t>(params.integer("count"))),
        streams_(static_cast<std::uint32_t>(params.integer("streams"))),
        rate_(params.number("rate")),
        payload_bytes_(static_cast<std::size_t>(params.integer("payload_bytes"))) {
    if (payload_bytes_ > 0) payload_ = Buffer::zeros(payload_bytes_);
  }

  bool next(std::vector<Packet>& out) override {
    if (emitted_ >= count_ * streams_) return false;
    const std::uint64_t index = emitted_++;
    if (rate_ > 0) {
      // Paced per stream: packet k of each stream is due k / rate seconds after the start.
      const auto due = start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(
                                        static_cast<double>(index / streams_) / rate_));
      std::this_thread::sleep_until(due);
    }
    Packet packet;
    packet.stream = static_cast<std::uint32_t>(index % streams_);
    packet.seq = index / streams_;
    packet.time_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
    packet.set("value", static_cast<std::int64_t>(packet.seq));
    if (payload_bytes_ > 0) packet.set("payload", payload_);
    out.push_back(std::move(packet));
    return emitted_ < count_ * streams_;
  }

  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override {
    return count_ * streams_;
  }

 private:
  std::uint64_t count_;
  std::uint32_t streams_;
  double rate_;
  std::size_t payload_bytes_;
  Buffer payload_;
  std::uint64_t emitted_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

void register_synthetic_source(Registry& registry) {
  registry.add({
      .name = "synthetic.source",
      .help = "Numbered packets (field 'value' = seq) for tests and benchmarks.",
      .params = {{"count", ParamType::integer, std::int64_t{100}, "packets per stream",
                  ParamRange{.low = 0}},
                 {"streams", ParamType::integer, std::int64_t{1}, "number of streams",
                  ParamRange{.low = 1}},
                 {"rate", ParamType::number, 0.0, "packets per second per stream; 0: unpaced",
                  ParamRange{.low = 0}},
                 {"payload_bytes", ParamType::integer, std::int64_t{0},
                  "size of a shared 'payload' bytes field; 0: none", ParamRange{.low = 0}}},
      .info =
          [](const Params& params) {
            StageInfo info{.reads = {}, .writes = {"value"}};
            if (params.integer("payload_bytes") > 0) info.writes.push_back("payload");
            info.blocking = params.number("rate") > 0;  // it sleeps between packets
            return info;
          },
      .make_source = [](const Params& params) -> std::unique_ptr<Source> {
        return std::make_unique<SyntheticSource>(params);
      },
  });
}

}  // namespace micromodels::detail
