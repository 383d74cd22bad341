// Registry: adding, finding and listing stage types; the built-in and global registries.
#include "micromodels/registry.hpp"

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace micromodels {
namespace {

class Nothing : public Stage {
 public:
  void process(Packet packet, std::vector<Packet>& out) override {
    out.push_back(std::move(packet));
  }
};

class Empty : public Source {
 public:
  bool next(std::vector<Packet>&) override { return false; }
};

StageType stage_type(std::string name) {
  StageType type;
  type.name = std::move(name);
  type.make = [](const Params&) { return std::make_unique<Nothing>(); };
  return type;
}

StageType source_type(std::string name) {
  StageType type;
  type.name = std::move(name);
  type.make_source = [](const Params&) { return std::make_unique<Empty>(); };
  return type;
}

ParamSpec spec(std::string name, ParamType type, std::optional<ParamValue> default_value) {
  ParamSpec out;
  out.name = std::move(name);
  out.type = type;
  out.default_value = std::move(default_value);
  return out;
}

std::string add_error(Registry& registry, StageType type) {
  try {
    registry.add(std::move(type));
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(Registry, FindsWhatWasAdded) {
  Registry registry;
  registry.add(stage_type("face.detect"));
  registry.add(source_type("video.source"));
  const StageType* detect = registry.find("face.detect");
  ASSERT_NE(detect, nullptr);
  EXPECT_EQ(detect->name, "face.detect");
  EXPECT_FALSE(detect->is_source());
  const StageType* video = registry.find("video.source");
  ASSERT_NE(video, nullptr);
  EXPECT_TRUE(video->is_source());
  EXPECT_EQ(registry.find("face.detec"), nullptr);
  EXPECT_EQ(registry.find(""), nullptr);
}

TEST(Registry, NamesAreSorted) {
  Registry registry;
  registry.add(stage_type("zeta"));
  registry.add(stage_type("alpha.b"));
  registry.add(source_type("alpha.a"));
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"alpha.a", "alpha.b", "zeta"}));
  EXPECT_TRUE(Registry().names().empty());
}

TEST(Registry, ATypeWithoutInfoRequiresAndWritesNothingAndGetsWholePackets) {
  Registry registry;
  registry.add(stage_type("plain"));
  const StageType* plain = registry.find("plain");
  ASSERT_TRUE(static_cast<bool>(plain->info));
  StageInfo info = plain->info(Params{});
  EXPECT_TRUE(info.reads.empty());
  EXPECT_TRUE(info.writes.empty());
  EXPECT_TRUE(info.reads_all);  // what it reads is unknown: a Redis hop carries every field
  EXPECT_FALSE(info.blocking);
}

TEST(Registry, KeepsInfoAndFactories) {
  Registry registry;
  StageType type = stage_type("negate");
  type.params = {spec("scale", ParamType::number, 1.0)};
  type.info = [](const Params& params) {
    StageInfo info;
    info.reads = {"x"};
    info.writes = {"x"};
    info.batching = params.number("scale") > 1;
    return info;
  };
  registry.add(std::move(type));
  const StageType* negate = registry.find("negate");
  Params params = Params::resolve("n", negate->params, {{"scale", 2.0}});
  EXPECT_EQ(negate->info(params).reads, std::vector<std::string>{"x"});
  EXPECT_TRUE(negate->info(params).batching);
  EXPECT_NE(negate->make(params), nullptr);
}

TEST(Registry, RefusesDuplicateAndIncompleteTypes) {
  Registry registry;
  registry.add(stage_type("face.detect"));
  EXPECT_EQ(add_error(registry, stage_type("face.detect")),
            "stage type 'face.detect': already registered");
  EXPECT_EQ(add_error(registry, source_type("face.detect")),
            "stage type 'face.detect': already registered");

  StageType neither;
  neither.name = "neither";
  EXPECT_EQ(add_error(registry, neither),
            "stage type 'neither': set exactly one of make (a stage) and make_source");
  StageType both = stage_type("both");
  both.make_source = source_type("x").make_source;
  EXPECT_EQ(add_error(registry, both),
            "stage type 'both': set exactly one of make (a stage) and make_source");

  EXPECT_EQ(add_error(registry, stage_type("")),
            "stage type '': a type name is letters, digits, '_', '.' or '-'");
  EXPECT_EQ(add_error(registry, stage_type("face detect")),
            "stage type 'face detect': a type name is letters, digits, '_', '.' or '-'");
  EXPECT_EQ(registry.names(), std::vector<std::string>{"face.detect"});
}

TEST(Registry, RefusesBadParamSpecs) {
  Registry registry;
  StageType twice = stage_type("twice");
  twice.params = {spec("every", ParamType::integer, std::int64_t{1}),
                  spec("every", ParamType::integer, std::int64_t{2})};
  EXPECT_EQ(add_error(registry, twice), "stage type 'twice': param 'every' is declared twice");

  StageType nameless = stage_type("nameless");
  nameless.params = {spec("", ParamType::integer, std::nullopt)};
  EXPECT_EQ(add_error(registry, nameless), "stage type 'nameless': a param has no name");

  StageType wrong_default = stage_type("wrong");
  wrong_default.params = {spec("every", ParamType::integer, 2.5)};
  EXPECT_EQ(add_error(registry, wrong_default),
            "stage type 'wrong': param 'every': the default is not of type integer");

  // A range: on a param with numbers, holding a value, and holding the default.
  StageType text_range = stage_type("text_range");
  text_range.params = {spec("model", ParamType::text, std::string("hog"))};
  text_range.params[0].range = {.low = 0};
  EXPECT_EQ(add_error(registry, text_range),
            "stage type 'text_range': param 'model': a range is for integer, number and list of "
            "numbers params, not text");
  StageType empty_range = stage_type("empty_range");
  empty_range.params = {spec("share", ParamType::number, 0.5)};
  empty_range.params[0].range = {.low = 1, .high = 1, .high_exclusive = true};
  EXPECT_EQ(add_error(registry, empty_range),
            "stage type 'empty_range': param 'share': the range (at least 1 and below 1) holds no "
            "value");
  StageType outside = stage_type("outside");
  outside.params = {spec("every", ParamType::integer, std::int64_t{0}),
                    spec("sizes", ParamType::numbers, std::vector<double>{8, 0})};
  outside.params[0].range = {.low = 1};
  EXPECT_EQ(add_error(registry, outside),
            "stage type 'outside': param 'every': the default 0 is not at least 1");
  outside.params[0].default_value = std::int64_t{1};
  outside.params[1].range = {.low = 1};
  EXPECT_EQ(add_error(registry, outside),
            "stage type 'outside': param 'sizes': the default [8, 0] is not at least 1 each");
  outside.params[1].range = {.low = 0, .high = 8};
  registry.add(outside);

  // An integer default for a number param is fine: resolve turns it into a double.
  StageType number = stage_type("number");
  number.params = {spec("rate", ParamType::number, std::int64_t{30})};
  registry.add(number);
  EXPECT_DOUBLE_EQ(Params::resolve("n", registry.find("number")->params, {}).number("rate"), 30);
}

// A type whose params depend on another (as a Python class declares its own): `kind` says
// which further params there are, and the whole set is checked as one.
TEST(StageType, ResolvesTheParamsThatItsOwnParamsDeclare) {
  StageType type = stage_type("test.kinds");
  type.params = {{"kind", ParamType::text, std::nullopt, ""}};
  type.more_params = [](const Params& own) -> std::vector<ParamSpec> {
    if (own.text("kind") == "blur") return {{"radius", ParamType::integer, std::int64_t{3}, ""}};
    if (own.text("kind") == "clash") return {{"kind", ParamType::integer, std::int64_t{1}, ""}};
    if (own.text("kind") == "bad") return {{"gain", ParamType::integer, 1.5, ""}};
    if (own.text("kind") == "outside") {
      return {{"gain", ParamType::number, 0.0, "", {.low = 0, .low_exclusive = true}}};
    }
    return {};
  };
  const Params defaults = type.resolve("s", {{"kind", std::string("blur")}});
  EXPECT_EQ(defaults.integer("radius"), 3);
  EXPECT_EQ(type.resolve("s", {{"kind", std::string("blur")}, {"radius", std::int64_t{7}}})
                .integer("radius"),
            7);
  const auto error_of = [&](const std::map<std::string, ParamValue>& given) {
    try {
      (void)type.resolve("s", given);
    } catch (const ParamError& error) {
      return error.key() + ": " + error.what();
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of({{"kind", std::string("plain")}, {"radius", std::int64_t{7}}}),
            "radius: stage 's': param 'radius': unknown param; valid params: kind");
  EXPECT_EQ(error_of({{"kind", std::string("blur")}, {"raduis", std::int64_t{7}}}),
            "raduis: stage 's': param 'raduis': unknown param; did you mean 'radius'? Valid "
            "params: kind, radius");
  EXPECT_EQ(error_of({{"kind", std::string("blur")}, {"radius", 2.5}}),
            "radius: stage 's': param 'radius': expected an integer, got 2.5");
  EXPECT_EQ(error_of({}), "kind: stage 's': param 'kind': required but not given; set it under "
                          "params (text)");
  EXPECT_EQ(error_of({{"kind", std::string("clash")}}),
            "kind: stage 's': param 'kind': declared again; type 'test.kinds' has a param of that "
            "name, rename the other");
  EXPECT_EQ(error_of({{"kind", std::string("bad")}}),
            "gain: stage 's': param 'gain': the default is not of type integer");
  EXPECT_EQ(error_of({{"kind", std::string("outside")}}),
            "gain: stage 's': param 'gain': the default 0.0 is not above 0");
}

TEST(Registry, WithBuiltinsHoldsWhatRegisterBuiltinStagesAdds) {
  Registry expected;
  register_builtin_stages(expected);
  EXPECT_EQ(Registry::with_builtins().names(), expected.names());
  EXPECT_FALSE(expected.names().empty());
}

TEST(Registry, GlobalIsOneInstanceStartingWithTheBuiltins) {
  Registry& global = Registry::global();
  EXPECT_EQ(&global, &Registry::global());
  for (const std::string& name : Registry::with_builtins().names()) {
    EXPECT_NE(global.find(name), nullptr) << name;
  }
  // Users add their own types to it.
  global.add(stage_type("registry_test.custom"));
  EXPECT_NE(Registry::global().find("registry_test.custom"), nullptr);
  EXPECT_EQ(Registry::with_builtins().find("registry_test.custom"), nullptr);
}

}  // namespace
}  // namespace micromodels
