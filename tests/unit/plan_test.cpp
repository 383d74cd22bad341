// Plan: the validated pipeline as a graph, the fields each hop carries, the version that
// processes of one distributed run must share, and building a stage.
#include "micromodels/plan.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>

#include "micromodels/stage.hpp"

namespace micromodels {
namespace {

class Pass final : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override { out.push_back(std::move(packet)); }
};

// A registry with one type per StageInfo a test needs: "t.NAME".
Registry registry_with(const std::vector<std::pair<std::string, StageInfo>>& types) {
  Registry registry = Registry::with_builtins();
  for (const auto& [name, info] : types) {
    StageType type{.name = "t." + name, .info = [info](const Params&) { return info; }};
    if (name == "source") {
      type.make_source = [](const Params&) -> std::unique_ptr<Source> { return nullptr; };
    } else {
      type.make = [](const Params&) -> std::unique_ptr<Stage> { return std::make_unique<Pass>(); };
    }
    registry.add(std::move(type));
  }
  return registry;
}

using Set = std::set<std::string>;

// The eye-contact chain's shape: source -> detect -> track -> smooth -> blend -> sink, sbs.
TEST(Plan, EachHopCarriesWhatItsStageAndEveryStageAfterItRead) {
  const Registry registry = registry_with({
      {"source", {.writes = {"frame", "fps"}}},
      {"detect", {.reads = {"frame"}, .writes = {"faces"}}},
      {"track", {.reads = {"frame"}, .writes = {"face"}, .optional_reads = {"faces"}}},
      {"smooth", {.optional_reads = {"face"}}},  // reads no frame itself
      {"blend", {.reads = {"frame"}, .writes = {"frame", "input_frame"}}},
      {"sink", {.reads = {"frame"}, .optional_reads = {"fps"}}},
      {"sbs", {.reads = {"frame", "input_frame"}}},
  });
  const Plan plan(Pipeline::from_yaml_string(R"(
pipeline: eye
stages:
  - { name: source, type: t.source }
  - { name: detect, type: t.detect }
  - { name: track, type: t.track }
  - { name: smooth, type: t.smooth }
  - { name: blend, type: t.blend }
  - { name: sink, type: t.sink }
  - { name: sbs, type: t.sbs, inputs: [blend] }
)"),
                  registry);
  const auto carried = [&](const char* stage) { return plan.stage(stage).carried; };
  EXPECT_EQ(carried("sbs"), (Set{"frame", "input_frame"}));
  EXPECT_EQ(carried("sink"), (Set{"frame", "fps"}));
  EXPECT_EQ(carried("blend"), (Set{"frame", "fps", "input_frame"}));
  // smooth reads no frame, yet the frame reaches it: blend after it needs it.
  EXPECT_EQ(carried("smooth"), (Set{"face", "frame", "fps", "input_frame"}));
  EXPECT_EQ(carried("track"), (Set{"faces", "face", "frame", "fps", "input_frame"}));
  EXPECT_EQ(carried("detect"), carried("track"));

  EXPECT_TRUE(plan.stage("sink").sink());
  EXPECT_TRUE(plan.stage("sbs").sink());
  EXPECT_FALSE(plan.stage("blend").sink());
  EXPECT_EQ(plan.stage("blend").outputs.size(), 2u);
  EXPECT_EQ(plan.roots(plan.stage("sbs").index), std::vector<std::size_t>{0});
}

TEST(Plan, AStageThatReadsEverythingGetsEverythingAndSoDoesEveryHopBeforeIt) {
  const Registry registry = registry_with({
      {"source", {.writes = {"value", "payload"}}},
      {"work", {.reads = {"value"}}},
      {"small", {.reads = {"value"}}},
      {"all", {.reads_all = true}},
      {"nothing", {}},
  });
  const Plan plan(Pipeline::from_yaml_string(R"(
pipeline: p
stages:
  - { name: source, type: t.source }
  - { name: work, type: t.work }
  - { name: small, type: t.small, inputs: [work] }
  - { name: all, type: t.all, inputs: [work] }
  - { name: after, type: t.nothing, inputs: [small] }
)"),
                  registry);
  EXPECT_FALSE(plan.stage("all").carried.has_value());
  EXPECT_FALSE(plan.stage("work").carried.has_value());  // one branch after it reads everything
  EXPECT_EQ(plan.stage("small").carried, (Set{"value"}));
  EXPECT_EQ(plan.stage("after").carried, Set{});  // reads nothing: carries nothing
}

TEST(Plan, TheVersionFollowsTheStructureNotTheParams) {
  const auto version = [](const std::string& yaml) {
    return Plan(Pipeline::from_yaml_string(yaml), Registry::global()).version();
  };
  const std::string base = R"(
pipeline: p
stages:
  - { name: source, type: synthetic.source, params: { count: 10 } }
  - { name: work, type: model.sleep, consumers: 2 }
  - { name: sink, type: sink.jsonl, ordered: true, params: { path: out.jsonl } }
)";
  const std::uint64_t v = version(base);
  EXPECT_EQ(version(base), v) << "stable";
  std::string params = base;
  params.replace(params.find("count: 10"), 9, "count: 99");
  params.replace(params.find("consumers: 2"), 12, "consumers: 5");
  EXPECT_EQ(version(params), v) << "params and consumers are each process's own";
  std::string type = base;
  type.replace(type.find("model.sleep"), 11, "model.spin");
  EXPECT_NE(version(type), v);
  std::string order = base;
  order.replace(order.find("ordered: true"), 13, "ordered: false");
  EXPECT_NE(version(order), v);
  // What decides the drops: a worker of other settings would drop what this file keeps.
  std::string capacity = base;
  capacity.replace(capacity.find("consumers: 2"), 12, "consumers: 2, queue: { capacity: 4 }");
  EXPECT_EQ(version(capacity), v) << "a queue's capacity is each process's own";
  std::string overflow = base;
  overflow.replace(overflow.find("consumers: 2"), 12, "queue: { overflow: drop_newest }");
  EXPECT_NE(version(overflow), v);
  const std::string live = "live: { max_age_ms: 50 }\nstages:";
  std::string with_live = base;
  with_live.replace(with_live.find("stages:"), 7, live);
  EXPECT_NE(version(with_live), v);
  std::string other_budget = with_live;
  other_budget.replace(other_budget.find("max_age_ms: 50"), 14, "max_age_ms: 80");
  EXPECT_NE(version(other_budget), version(with_live));
  EXPECT_EQ(version_text(0x1fULL), "000000000000001f");
}

TEST(Plan, AStageThatFailsToBuildIsAConfigErrorNamingItAndItsType) {
  Registry registry = Registry::with_builtins();
  registry.add({.name = "t.broken",
                .make = [](const Params&) -> std::unique_ptr<Stage> {
                  throw std::runtime_error("model file missing");
                }});
  const Plan plan(Pipeline::from_yaml_string("pipeline: p\nstages:\n"
                                             "  - { name: source, type: synthetic.source }\n"
                                             "  - { name: work, type: t.broken }\n",
                                             "p.yaml"),
                  registry);
  try {
    (void)Plan::make_stage(plan.stage("work"));
    ADD_FAILURE() << "built";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "p.yaml:4:19: stage 'work' (t.broken) could not be built: model file missing");
  }
  EXPECT_THROW((void)plan.stage("nope"), std::invalid_argument);
}

TEST(Plan, AMakeThatReturnsNoStageIsAConfigErrorNotACrash) {
  Registry registry = Registry::with_builtins();
  registry.add({.name = "t.null", .make = [](const Params&) { return std::unique_ptr<Stage>(); }});
  const Plan plan(Pipeline::from_yaml_string("pipeline: p\nstages:\n"
                                             "  - { name: source, type: synthetic.source }\n"
                                             "  - { name: work, type: t.null }\n",
                                             "p.yaml"),
                  registry);
  try {
    (void)Plan::make_stage(plan.stage("work"));
    ADD_FAILURE() << "built";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "p.yaml:4:19: stage 'work' (t.null) could not be built: its type's make returned no "
              "stage (a null pointer): fix the type's registration (its plugin)");
  }
}

TEST(Plan, PartitionsOnlyWhereAStreamIsGatheredInOneProcess) {
  EXPECT_NO_THROW(Plan(Pipeline::from_yaml_string(
                           "pipeline: p\nstages:\n"
                           "  - { name: source, type: synthetic.source }\n"
                           "  - { name: track, type: pass, state: per_stream, partitions: 4 }\n"),
                       Registry::global()));
  try {
    Plan(Pipeline::from_yaml_string("pipeline: p\nstages:\n"
                                    "  - { name: source, type: synthetic.source }\n"
                                    "  - { name: work, type: pass, partitions: 4 }\n",
                                    "p.yaml"),
         Registry::global());
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("p.yaml:4:31: stage 'work': key 'partitions': partitions "
                                         "apply only to a stage that needs each stream"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace micromodels
