// Params: resolving given values against a stage type's specs, parsing and formatting.
#include "micromodels/params.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace micromodels {
namespace {

ParamSpec spec(std::string name, ParamType type, std::optional<ParamValue> default_value,
               std::string help = "") {
  ParamSpec out;
  out.name = std::move(name);
  out.type = type;
  out.default_value = std::move(default_value);
  out.help = std::move(help);
  return out;
}

// The specs of a face detector, one param of each type.
std::vector<ParamSpec> detector_specs() {
  return {
      spec("model", ParamType::text, std::string("hog")),
      spec("every", ParamType::integer, std::int64_t{10}),
      spec("threshold", ParamType::number, 0.5),
      spec("scales", ParamType::numbers, std::vector<double>{1.0}),
      spec("upsample", ParamType::boolean, false),
  };
}

// The ParamError message of resolving `given`, or "" when it resolves.
std::string resolve_error(const std::vector<ParamSpec>& specs,
                          const std::map<std::string, ParamValue>& given,
                          std::string* key = nullptr) {
  try {
    (void)Params::resolve("identify", specs, given);
  } catch (const ParamError& error) {
    if (key != nullptr) {
      *key = error.key();
    }
    return error.what();
  }
  return "";
}

TEST(Params, DefaultsFillWhatIsNotGiven) {
  Params p = Params::resolve("identify", detector_specs(), {{"every", std::int64_t{3}}});
  EXPECT_EQ(p.integer("every"), 3);
  EXPECT_EQ(p.text("model"), "hog");
  EXPECT_DOUBLE_EQ(p.number("threshold"), 0.5);
  EXPECT_EQ(p.numbers("scales"), std::vector<double>{1.0});
  EXPECT_FALSE(p.boolean("upsample"));
  EXPECT_EQ(p.values().size(), 5U);
}

TEST(Params, TextIsParsedIntoTheDeclaredType) {
  // This is how `--set identify.every=7` and quoted YAML values arrive.
  Params p = Params::resolve("identify", detector_specs(),
                             {{"every", std::string("7")},
                              {"threshold", std::string("0.25")},
                              {"scales", std::string("[1, 1.5, 2]")},
                              {"upsample", std::string("true")},
                              {"model", std::string("cnn")}});
  EXPECT_EQ(p.integer("every"), 7);
  EXPECT_DOUBLE_EQ(p.number("threshold"), 0.25);
  EXPECT_EQ(p.numbers("scales"), (std::vector<double>{1, 1.5, 2}));
  EXPECT_TRUE(p.boolean("upsample"));
  EXPECT_EQ(p.text("model"), "cnn");
  // Stored in the declared type, not as the text that came in.
  EXPECT_TRUE(std::holds_alternative<std::int64_t>(p.values().at("every")));
  EXPECT_TRUE(std::holds_alternative<double>(p.values().at("threshold")));
}

TEST(Params, AnIntegerIsAcceptedWhereANumberIsExpected) {
  Params p = Params::resolve("identify", detector_specs(), {{"threshold", std::int64_t{1}}});
  EXPECT_TRUE(std::holds_alternative<double>(p.values().at("threshold")));
  EXPECT_DOUBLE_EQ(p.number("threshold"), 1.0);
}

TEST(Params, WrongTypesNameStageKeyAndExpectation) {
  std::string key;
  EXPECT_EQ(resolve_error(detector_specs(), {{"every", std::string("ten")}}, &key),
            "stage 'identify': param 'every': expected an integer, got \"ten\"");
  EXPECT_EQ(key, "every");
  EXPECT_EQ(resolve_error(detector_specs(), {{"every", 2.5}}),
            "stage 'identify': param 'every': expected an integer, got 2.5");
  EXPECT_EQ(resolve_error(detector_specs(), {{"every", true}}),
            "stage 'identify': param 'every': expected an integer, got true");
  EXPECT_EQ(resolve_error(detector_specs(), {{"every", 3.0}}),
            "stage 'identify': param 'every': expected an integer, got 3.0");
  EXPECT_EQ(resolve_error(detector_specs(), {{"threshold", std::string("high")}}),
            "stage 'identify': param 'threshold': expected a number, got \"high\"");
  EXPECT_EQ(resolve_error(detector_specs(), {{"upsample", std::int64_t{2}}}),
            "stage 'identify': param 'upsample': expected true or false, got 2");
  EXPECT_EQ(resolve_error(detector_specs(), {{"scales", 2.0}}),
            "stage 'identify': param 'scales': expected a list of numbers such as [1, 2.5], got "
            "2.0");
  EXPECT_EQ(resolve_error(detector_specs(), {{"scales", std::string("[1, x]")}}),
            "stage 'identify': param 'scales': expected a list of numbers such as [1, 2.5], got "
            "\"[1, x]\"");
  // A number where text is expected is refused rather than silently reformatted ("1.10" would
  // come back as "1.1").
  EXPECT_EQ(resolve_error(detector_specs(), {{"model", std::int64_t{5}}}),
            "stage 'identify': param 'model': expected text, got 5; put the value in quotes");
}

TEST(Params, UnknownKeysListTheValidOnesAndSuggestACloseMatch) {
  std::string key;
  EXPECT_EQ(resolve_error(detector_specs(), {{"evrey", std::int64_t{3}}}, &key),
            "stage 'identify': param 'evrey': unknown param; did you mean 'every'? Valid params: "
            "model, every, threshold, scales, upsample");
  EXPECT_EQ(key, "evrey");
  EXPECT_EQ(resolve_error(detector_specs(), {{"colour", std::string("red")}}),
            "stage 'identify': param 'colour': unknown param; valid params: model, every, "
            "threshold, scales, upsample");
  EXPECT_EQ(resolve_error({}, {{"path", std::string("x")}}),
            "stage 'identify': param 'path': unknown param; this stage type takes no params, "
            "remove it");
}

TEST(Params, MissingRequiredParamSaysWhatToGive) {
  std::vector<ParamSpec> specs = {
      spec("path", ParamType::text, std::nullopt, "output file (.jsonl)")};
  std::string key;
  EXPECT_EQ(resolve_error(specs, {}, &key),
            "stage 'identify': param 'path': required but not given; set it under params (text: "
            "output file (.jsonl))");
  EXPECT_EQ(key, "path");
  EXPECT_EQ(Params::resolve("sink", specs, {{"path", std::string("a.jsonl")}}).text("path"),
            "a.jsonl");
}

TEST(ParamRange, BoundsAreInclusiveUnlessMarkedExclusive) {
  const ParamRange within{.low = 0, .high = 1};
  EXPECT_TRUE(within.contains(0.0));
  EXPECT_TRUE(within.contains(1.0));
  EXPECT_FALSE(within.contains(-0.001));
  EXPECT_FALSE(within.contains(1.001));
  const ParamRange open{.low = 0, .low_exclusive = true, .high = 1, .high_exclusive = true};
  EXPECT_FALSE(open.contains(0.0));
  EXPECT_TRUE(open.contains(0.5));
  EXPECT_FALSE(open.contains(1.0));
  EXPECT_TRUE(ParamRange{.high = 2}.contains(-1e300));
  EXPECT_TRUE(ParamRange{}.contains(-1e300));
  // An integer as the number it is; a list when each of its numbers is in range.
  EXPECT_TRUE(within.contains(std::int64_t{1}));
  EXPECT_FALSE(within.contains(std::int64_t{2}));
  EXPECT_TRUE(within.contains(std::vector<double>{0, 0.5, 1}));
  EXPECT_FALSE(within.contains(std::vector<double>{0, 1.5}));
  EXPECT_TRUE(within.contains(std::vector<double>{}));
  EXPECT_TRUE(within.contains(std::string("text has no range")));
}

TEST(ParamRange, SaysItsBoundsInWords) {
  EXPECT_EQ(ParamRange{}.str(), "");
  EXPECT_EQ((ParamRange{.low = 0}).str(), "at least 0");
  EXPECT_EQ((ParamRange{.low = 0, .low_exclusive = true}).str(), "above 0");
  EXPECT_EQ((ParamRange{.high = 2.5}).str(), "at most 2.5");
  EXPECT_EQ((ParamRange{.high = 2.5, .high_exclusive = true}).str(), "below 2.5");
  EXPECT_EQ((ParamRange{.low = -30, .high = 30}).str(), "within -30..30");
  EXPECT_EQ(
      (ParamRange{.low = 0.1, .low_exclusive = true, .high = 1, .high_exclusive = true}).str(),
      "above 0.1 and below 1");
  EXPECT_EQ((ParamRange{.low = 0, .low_exclusive = true, .high = 10}).str(),
            "above 0 and at most 10");
  EXPECT_EQ((ParamRange{.low = 0, .high = 1, .high_exclusive = true}).str(),
            "at least 0 and below 1");
  EXPECT_EQ((ParamRange{.low = 0, .high = 4294967295.0}).str(), "within 0..4294967295");
}

TEST(Params, AValueOutsideItsRangeIsRefusedNamingTheRange) {
  std::vector<ParamSpec> specs = {
      spec("every", ParamType::integer, std::int64_t{1}),
      spec("threshold", ParamType::number, 0.5),
      spec("cutoff", ParamType::number, 1.0),
      spec("scales", ParamType::numbers, std::vector<double>{1.0}),
  };
  specs[0].range = {.low = 1};
  specs[1].range = {.low = 0, .high = 1};
  specs[2].range = {.low = 0, .low_exclusive = true};
  specs[3].range = {.low = 0, .low_exclusive = true, .high = 4};

  // Inclusive bounds take the bound itself, exclusive ones do not.
  const Params edges = Params::resolve("identify", specs,
                                       {{"every", std::int64_t{1}},
                                        {"threshold", std::int64_t{1}},
                                        {"cutoff", 1e-9},
                                        {"scales", std::vector<double>{0.5, 4}}});
  EXPECT_EQ(edges.integer("every"), 1);
  EXPECT_DOUBLE_EQ(edges.number("threshold"), 1);

  std::string key;
  EXPECT_EQ(resolve_error(specs, {{"every", std::int64_t{0}}}, &key),
            "stage 'identify': param 'every' must be at least 1; got 0");
  EXPECT_EQ(key, "every");
  // Text (the command line, quoted YAML) is checked once parsed; a number shows as written.
  EXPECT_EQ(resolve_error(specs, {{"threshold", std::string("5")}}),
            "stage 'identify': param 'threshold' must be within 0..1; got 5");
  EXPECT_EQ(resolve_error(specs, {{"threshold", -0.25}}),
            "stage 'identify': param 'threshold' must be within 0..1; got -0.25");
  EXPECT_EQ(resolve_error(specs, {{"cutoff", 0.0}}),
            "stage 'identify': param 'cutoff' must be above 0; got 0");
  // A list: each of its numbers; the message shows the whole list.
  EXPECT_EQ(resolve_error(specs, {{"scales", std::vector<double>{1, 0, 2}}}, &key),
            "stage 'identify': param 'scales' must be above 0 and at most 4 each; got [1, 0, 2]");
  EXPECT_EQ(key, "scales");
  EXPECT_EQ(resolve_error(specs, {{"scales", std::vector<double>{}}}), "");
}

// Registry::add refuses a default outside its own range; a spec handed straight to resolve says
// whose mistake it is when the default is used.
TEST(Params, ADefaultOutsideItsRangeIsTheStageTypesMistake) {
  std::vector<ParamSpec> specs = {spec("every", ParamType::integer, std::int64_t{0})};
  specs[0].range = {.low = 1};
  EXPECT_EQ(resolve_error(specs, {}),
            "stage 'identify': param 'every' must be at least 1; got 0 (the stage type's own "
            "default is wrong)");
  EXPECT_EQ(resolve_error(specs, {{"every", std::int64_t{2}}}), "");
}

TEST(Params, AccessorsRefuseUndeclaredKeysAndWrongTypes) {
  Params p = Params::resolve("identify", detector_specs(), {});
  try {
    (void)p.integer("evry");
    FAIL() << "expected ParamError";
  } catch (const ParamError& error) {
    EXPECT_EQ(std::string(error.what()),
              "stage 'identify': param 'evry': not declared by the stage type; declared params: "
              "every, model, scales, threshold, upsample");
    EXPECT_EQ(error.key(), "evry");
  }
  try {
    (void)p.text("every");
    FAIL() << "expected ParamError";
  } catch (const ParamError& error) {
    EXPECT_EQ(std::string(error.what()),
              "stage 'identify': param 'every': read as text but holds 10");
  }
}

TEST(ParseParam, Booleans) {
  for (const char* yes : {"true", "True", "YES", "on", "1", " true "}) {
    EXPECT_EQ(parse_param(yes, ParamType::boolean), ParamValue(true)) << yes;
  }
  for (const char* no : {"false", "FALSE", "no", "off", "0"}) {
    EXPECT_EQ(parse_param(no, ParamType::boolean), ParamValue(false)) << no;
  }
  EXPECT_FALSE(parse_param("maybe", ParamType::boolean));
  EXPECT_FALSE(parse_param("", ParamType::boolean));
}

TEST(ParseParam, Integers) {
  EXPECT_EQ(parse_param("42", ParamType::integer), ParamValue(std::int64_t{42}));
  EXPECT_EQ(parse_param("-7", ParamType::integer), ParamValue(std::int64_t{-7}));
  EXPECT_EQ(parse_param("+7", ParamType::integer), ParamValue(std::int64_t{7}));
  EXPECT_EQ(parse_param(" 8 ", ParamType::integer), ParamValue(std::int64_t{8}));
  EXPECT_EQ(parse_param("9223372036854775807", ParamType::integer),
            ParamValue(std::numeric_limits<std::int64_t>::max()));
  for (const char* bad : {"", "ten", "2.5", "1e3", "9223372036854775808", "0x10", "3 4", "+-3"}) {
    EXPECT_FALSE(parse_param(bad, ParamType::integer)) << bad;
  }
}

TEST(ParseParam, Numbers) {
  EXPECT_EQ(parse_param("2.5", ParamType::number), ParamValue(2.5));
  EXPECT_EQ(parse_param("3", ParamType::number), ParamValue(3.0));
  EXPECT_EQ(parse_param("-1e-3", ParamType::number), ParamValue(-0.001));
  EXPECT_EQ(parse_param("+.5", ParamType::number), ParamValue(0.5));
  for (const char* bad : {"", "fast", "inf", "nan", "1e999", "0x1p3", "1.5.2", "1,5"}) {
    EXPECT_FALSE(parse_param(bad, ParamType::number)) << bad;
  }
}

TEST(ParseParam, TextIsTakenAsIs) {
  EXPECT_EQ(parse_param(" in.mp4", ParamType::text), ParamValue(std::string(" in.mp4")));
  EXPECT_EQ(parse_param("", ParamType::text), ParamValue(std::string()));
}

TEST(ParseParam, ListsOfNumbers) {
  using V = std::vector<double>;
  EXPECT_EQ(parse_param("[1, 2.5]", ParamType::numbers), ParamValue(V{1, 2.5}));
  EXPECT_EQ(parse_param("1,2.5", ParamType::numbers), ParamValue(V{1, 2.5}));
  EXPECT_EQ(parse_param("1 2.5  3", ParamType::numbers), ParamValue(V{1, 2.5, 3}));
  EXPECT_EQ(parse_param("[ ]", ParamType::numbers), ParamValue(V{}));
  EXPECT_EQ(parse_param("7", ParamType::numbers), ParamValue(V{7}));
  for (const char* bad : {"[1, 2", "1,,2", "1,", "[a]", "[1, inf]"}) {
    EXPECT_FALSE(parse_param(bad, ParamType::numbers)) << bad;
  }
}

TEST(FormatParam, ReadsBackAsTheSameValue) {
  EXPECT_EQ(format_param(true), "true");
  EXPECT_EQ(format_param(std::int64_t{-12}), "-12");
  EXPECT_EQ(format_param(2.5), "2.5");
  EXPECT_EQ(format_param(3.0), "3.0");  // stays a number, not an integer
  EXPECT_EQ(format_param(1e20), "1e+20");
  EXPECT_EQ(format_param(std::string("in.mp4")), "in.mp4");
  EXPECT_EQ(format_param(std::vector<double>{1, 2.5}), "[1, 2.5]");
  EXPECT_EQ(format_param(std::vector<double>{}), "[]");

  const std::vector<std::pair<ParamValue, ParamType>> cases = {
      {true, ParamType::boolean},
      {std::int64_t{-12}, ParamType::integer},
      {0.1, ParamType::number},
      {1.0 / 3.0, ParamType::number},
      {std::string("a b"), ParamType::text},
      {std::vector<double>{0.1, -2, 1e-9}, ParamType::numbers},
  };
  for (const auto& [value, type] : cases) {
    EXPECT_EQ(parse_param(format_param(value), type), value) << format_param(value);
  }
}

TEST(ParamTypeName, NamesEveryType) {
  EXPECT_EQ(param_type_name(ParamType::boolean), "boolean");
  EXPECT_EQ(param_type_name(ParamType::integer), "integer");
  EXPECT_EQ(param_type_name(ParamType::number), "number");
  EXPECT_EQ(param_type_name(ParamType::text), "text");
  EXPECT_EQ(param_type_name(ParamType::numbers), "list of numbers");
}

}  // namespace
}  // namespace micromodels
