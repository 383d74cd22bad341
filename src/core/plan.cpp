#include "micromodels/plan.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace micromodels {

namespace {

// What each hop carries: the hop into stage i carries what stage i reads (`reads` and
// `optional_reads`) and what every stage downstream of it reads; every field (nullopt) when one
// of them has `reads_all`. Fields a stage writes need no room here: they are added after the hop.
void carried_fields(std::vector<PlanStage>& stages) {
  std::vector<bool> done(stages.size(), false);
  const auto visit = [&](const auto& self, std::size_t i) -> void {
    if (done[i]) return;
    done[i] = true;  // no cycles: a stage is finished before anything reaches it again
    const StageInfo& info = stages[i].info;
    if (info.reads_all) return;  // nullopt: every field
    std::set<std::string> fields(info.reads.begin(), info.reads.end());
    fields.insert(info.optional_reads.begin(), info.optional_reads.end());
    for (const auto& [child, input] : stages[i].outputs) {
      self(self, child);
      if (!stages[child].carried) return;  // someone downstream reads everything
      fields.insert(stages[child].carried->begin(), stages[child].carried->end());
    }
    stages[i].carried = std::move(fields);
  };
  for (std::size_t i = 0; i < stages.size(); ++i) visit(visit, i);
}

// FNV-1a: stable across builds and machines, which std::hash is not.
void mix(std::uint64_t& hash, std::string_view text) {
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  hash ^= 0xff;  // a separator, so that "ab","c" and "a","bc" differ
  hash *= 0x100000001b3ULL;
}

}  // namespace

Plan::Plan(const Pipeline& pipeline, const Registry& registry)
    : pipeline_(pipeline), registry_(&registry) {
  pipeline_.validate(registry);
  const auto& configs = pipeline_.stages();
  stages_.reserve(configs.size());
  for (std::size_t i = 0; i < configs.size(); ++i) {
    PlanStage stage;
    stage.index = i;
    stage.config = configs[i];
    stage.type = registry.find(configs[i].type);
    stage.params = stage.type->resolve(configs[i].name, configs[i].params);
    stage.info = stage.type->info(stage.params);
    stage.blocking = configs[i].blocking.value_or(stage.info.blocking);
    stage.dead_letter = configs[i].name == pipeline_.dead_letter();
    stages_.push_back(std::move(stage));
  }
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const std::vector<std::string> inputs = pipeline_.inputs_of(i, registry);
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      const std::size_t from = find(inputs[k])->index;
      stages_[i].inputs.push_back(from);
      stages_[from].outputs.emplace_back(i, k);
    }
  }
  carried_fields(stages_);

  version_ = 0xcbf29ce484222325ULL;
  mix(version_, pipeline_.name());
  for (const PlanStage& s : stages_) {
    mix(version_, s.name());
    mix(version_, s.config.type);
    for (std::size_t input : s.inputs) mix(version_, stages_[input].name());
    mix(version_, std::string(s.config.ordered ? "o" : "") + (s.config.per_stream ? "s" : "") +
                      (s.dead_letter ? "d" : "") + std::to_string(s.config.partitions));
    // What decides which packets are dropped: a process of other settings would drop others.
    mix(version_, "overflow " + std::to_string(static_cast<int>(s.config.overflow)));
    if (s.inputs.size() > 1) {
      mix(version_, "join " + std::to_string(s.config.join_timeout_ms) + " " +
                        std::to_string(static_cast<int>(s.config.join_on_timeout)));
    }
    if (const std::optional<LiveConfig> live = pipeline_.live_at(s.name())) {
      mix(version_, "live " + std::to_string(live->max_age_ms) + " " +
                        std::to_string(static_cast<int>(live->policy)));
    }
  }
}

const PlanStage* Plan::find(std::string_view name) const {
  const auto it = std::find_if(stages_.begin(), stages_.end(),
                               [&](const PlanStage& s) { return s.name() == name; });
  return it == stages_.end() ? nullptr : &*it;
}

const PlanStage& Plan::stage(std::string_view name) const {
  if (const PlanStage* found = find(name)) return *found;
  std::string names;
  for (const PlanStage& s : stages_) names += (names.empty() ? "" : ", ") + s.name();
  throw std::invalid_argument("no stage named '" + std::string(name) + "'; the stages are " +
                              names);
}

std::vector<std::size_t> Plan::roots(std::size_t stage) const {
  std::vector<std::size_t> roots;
  std::vector<bool> seen(stages_.size(), false);
  std::vector<std::size_t> todo = {stage};
  while (!todo.empty()) {
    const std::size_t i = todo.back();
    todo.pop_back();
    if (seen[i]) continue;
    seen[i] = true;
    if (stages_[i].source()) roots.push_back(i);
    todo.insert(todo.end(), stages_[i].inputs.begin(), stages_[i].inputs.end());
  }
  std::sort(roots.begin(), roots.end());
  return roots;
}

namespace {

template <class T, class Make>
std::unique_ptr<T> build(const PlanStage& stage, const Make& make) {
  try {
    std::unique_ptr<T> made = make(stage.params);
    if (!made) {
      throw std::runtime_error(
          "its type's make returned no stage (a null pointer): fix the "
          "type's registration (its plugin)");
    }
    return made;
  } catch (const std::exception& error) {
    const auto at = stage.config.locations.find("type");
    throw ConfigError(at == stage.config.locations.end() ? SourceLocation{} : at->second, "type",
                      "stage '" + stage.name() + "' (" + stage.config.type +
                          ") could not be built: " + error.what());
  }
}

}  // namespace

template <class T>
std::unique_ptr<T> Plan::share_events(std::unique_ptr<T> made,
                                      const std::shared_ptr<EventCounts>& events) {
  if (events) {
    for (const auto& [event, n] : made->events_->counts()) events->add(event, n);
    made->events_ = events;
  }
  return made;
}

std::unique_ptr<Stage> Plan::make_stage(const PlanStage& stage,
                                        const std::shared_ptr<EventCounts>& events) {
  return share_events(build<Stage>(stage, stage.type->make), events);
}

std::unique_ptr<Source> Plan::make_source(const PlanStage& stage,
                                          const std::shared_ptr<EventCounts>& events) {
  return share_events(build<Source>(stage, stage.type->make_source), events);
}

std::string version_text(std::uint64_t version) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(version));
  return text;
}

}  // namespace micromodels
