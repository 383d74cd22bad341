#include "micromodels/stage_harness.hpp"

#include <stdexcept>

namespace micromodels {

StageHarness::StageHarness(const std::string& type_name,
                           const std::map<std::string, ParamValue>& params,
                           const Registry& registry) {
  const StageType* type = registry.find(type_name);
  if (type == nullptr) throw std::invalid_argument("no stage type named '" + type_name + "'");
  const Params resolved = type->resolve(type_name, params);
  info_ = type->info ? type->info(resolved) : StageInfo{};
  if (type->is_source()) {
    source_ = type->make_source(resolved);
  } else {
    stage_ = type->make(resolved);
  }
}

StageHarness::~StageHarness() = default;

std::vector<Packet> StageHarness::process(Packet packet) {
  if (!stage_) throw std::logic_error("StageHarness::process: this stage is a source; use drain()");
  std::vector<Packet> out;
  stage_->process(std::move(packet), out);
  return out;
}

std::vector<Packet> StageHarness::process_batch(std::vector<Packet> batch) {
  if (!stage_) throw std::logic_error("StageHarness::process_batch: this stage is a source");
  std::vector<Packet> out;
  stage_->process_batch(batch, out);
  return out;
}

std::vector<Packet> StageHarness::drain(std::size_t limit) {
  if (!source_) throw std::logic_error("StageHarness::drain: this stage is not a source");
  std::vector<Packet> out;
  while (out.size() < limit && source_->next(out)) {
  }
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace micromodels
