// Runs one stage alone: no threads, no queues, no broker. For tests and for users.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "micromodels/params.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/stage.hpp"

namespace micromodels {

/// Builds a stage from the registry exactly as a pipeline would, and calls it directly.
/// Exceptions from the stage reach the caller unchanged.
///
///   StageHarness detect("face.detect", {{"model", std::string("hog")}});
///   std::vector<Packet> out = detect.process(frame_packet);
///   StageHarness source("synthetic.source", {{"count", std::int64_t{3}}});
///   std::vector<Packet> all = source.drain();   // 3 packets
class StageHarness {
 public:
  explicit StageHarness(const std::string& type, const std::map<std::string, ParamValue>& params = {},
               const Registry& registry = Registry::global());
  ~StageHarness();

  [[nodiscard]] const StageInfo& info() const noexcept { return info_; }
  /// One packet through a stage.
  std::vector<Packet> process(Packet packet);
  std::vector<Packet> process_batch(std::vector<Packet> batch);
  /// Packets from a source until it ends, or `limit` packets.
  std::vector<Packet> drain(std::size_t limit = SIZE_MAX);

 private:
  StageInfo info_;
  std::unique_ptr<Stage> stage_;
  std::unique_ptr<Source> source_;
};

}  // namespace micromodels
