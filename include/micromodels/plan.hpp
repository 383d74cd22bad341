// A pipeline ready to run: validated, every stage with its type, resolved params and fields, and
// the graph as indices. What a Runner and a transport read; building it runs nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "micromodels/params.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/stage.hpp"

namespace micromodels {

/// One stage of a Plan.
struct PlanStage {
  std::size_t index = 0;
  StageConfig config{};
  const StageType* type = nullptr;
  Params params{};
  StageInfo info{};
  bool blocking = false;  // `blocking:` in the file, else the type's answer
  std::vector<std::size_t> inputs{};  // the stages it reads, in input order
  /// The stages it feeds: (stage, which of that stage's inputs).
  std::vector<std::pair<std::size_t, std::size_t>> outputs{};
  /// The fields the hop into this stage carries: what it and every stage after it read;
  /// nullopt when one of them reads every field (`reads_all`).
  std::optional<std::set<std::string>> carried{};
  bool dead_letter = false;  // the pipeline's `dead_letter:` stage

  [[nodiscard]] const std::string& name() const noexcept { return config.name; }
  [[nodiscard]] bool source() const noexcept { return type->is_source(); }
  /// Feeds nothing: its packets leave the pipeline here (the dead-letter stage is one too).
  [[nodiscard]] bool sink() const noexcept { return !source() && outputs.empty(); }
  /// Needs each stream's packets in one place: ordered, per_stream or a join.
  [[nodiscard]] bool gathers() const noexcept {
    return config.ordered || config.per_stream || inputs.size() > 1;
  }
};

/// The validated pipeline as a graph, and the one place where stage instances are built.
///
///   Plan plan(Pipeline::from_yaml_file("pipelines/example.yaml"), Registry::global());
///   for (const PlanStage& s : plan.stages()) std::cout << s.name() << " reads " << ...;
///   std::unique_ptr<Stage> work = plan.make_stage(plan.stage("work"));
class Plan {
 public:
  /// Validates `pipeline` against `registry` (throws ConfigError naming file:line:column).
  /// `registry` must outlive the plan.
  Plan(const Pipeline& pipeline, const Registry& registry);

  [[nodiscard]] const Pipeline& pipeline() const noexcept { return pipeline_; }
  [[nodiscard]] const Registry& registry() const noexcept { return *registry_; }
  [[nodiscard]] const std::vector<PlanStage>& stages() const noexcept { return stages_; }
  /// Throws std::invalid_argument naming the stages when there is none of that name.
  [[nodiscard]] const PlanStage& stage(std::string_view name) const;
  [[nodiscard]] const PlanStage* find(std::string_view name) const;
  /// The sources a stage's packets come from (for a source, itself).
  [[nodiscard]] std::vector<std::size_t> roots(std::size_t stage) const;
  /// A fingerprint of what processes of one distributed run must agree on: the pipeline's
  /// name and, per stage, its name, type, inputs, ordering, state and partitions, and what
  /// decides its drops (overflow policy, join timeout, live budget); not params, consumers or
  /// queue capacities, which each process may choose.
  [[nodiscard]] std::uint64_t version() const noexcept { return version_; }

  /// Builds a stage (loads its model) or a source. A failure is a ConfigError naming the stage,
  /// its type and the file position of `type:`. `events`: where the instance counts its events
  /// (what it counted while being built is added there), so that the instances of one stage
  /// share their counts; null: its own.
  [[nodiscard]] static std::unique_ptr<Stage> make_stage(
      const PlanStage& stage, const std::shared_ptr<EventCounts>& events = nullptr);
  [[nodiscard]] static std::unique_ptr<Source> make_source(
      const PlanStage& stage, const std::shared_ptr<EventCounts>& events = nullptr);

 private:
  template <class T>
  static std::unique_ptr<T> share_events(std::unique_ptr<T> made,
                                         const std::shared_ptr<EventCounts>& events);
  Pipeline pipeline_;
  const Registry* registry_;
  std::vector<PlanStage> stages_;
  std::uint64_t version_ = 0;
};

/// `version` as text: 16 hex digits.
[[nodiscard]] std::string version_text(std::uint64_t version);

}  // namespace micromodels
