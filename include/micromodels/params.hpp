// Typed stage parameters, checked against the stage type's declared list.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace micromodels {

/// A parameter value as written in YAML or on the command line.
using ParamValue = std::variant<bool, std::int64_t, double, std::string, std::vector<double>>;

enum class ParamType { boolean, integer, number, text, numbers };
[[nodiscard]] std::string_view param_type_name(ParamType type) noexcept;

/// The values an integer or number param, or each number of a list, may take: a lower and an
/// upper bound, either optional, each inclusive unless marked exclusive.
///
///   {"jitter", ParamType::number, 0.0, "spread", ParamRange{.low = 0, .high = 1}}  // within 0..1
///   ParamRange{.low = 0, .low_exclusive = true, .high = 10}           // above 0 and at most 10
struct ParamRange {
  std::optional<double> low{};
  bool low_exclusive = false;
  std::optional<double> high{};
  bool high_exclusive = false;

  /// Whether an integer or a number, or each number of a list, is within the bounds (true for
  /// other values, which have no range).
  [[nodiscard]] bool contains(const ParamValue& value) const noexcept;
  /// "at least 0", "above 0", "at most 1", "below 1", "within 0..1" (both inclusive), or two
  /// joined: "above 0 and below 1"; "" when there is no bound.
  [[nodiscard]] std::string str() const;
};

/// One declared parameter. A spec without a default is required. Params::resolve refuses a value
/// outside the range ("param 'KEY' must be RANGE; got VALUE"); Registry::add refuses a default
/// outside it, and a range on a boolean or text param.
struct ParamSpec {
  std::string name{};
  ParamType type = ParamType::text;
  std::optional<ParamValue> default_value{};
  std::string help{};
  ParamRange range{};
};

/// Thrown for an unknown, missing, wrongly typed or out-of-range parameter; `what()` names the
/// key, and the stage when Params::resolve threw it.
class ParamError : public std::runtime_error {
 public:
  ParamError(std::string key, const std::string& message)
      : std::runtime_error(message), key_(std::move(key)) {}
  [[nodiscard]] const std::string& key() const noexcept { return key_; }

 private:
  std::string key_{};
};

/// The parameters of one stage instance, complete (defaults filled in) and type-checked.
///
///   Params p = Params::resolve("identify", specs, {{"every", std::int64_t{10}}});
///   int every = p.integer("every");
class Params {
 public:
  Params() = default;
  /// Checks `given` against `specs` (unknown keys, missing required keys, types, ranges; an
  /// integer is accepted where a number is expected) and fills in defaults. Throws ParamError.
  static Params resolve(std::string_view stage, const std::vector<ParamSpec>& specs,
                        const std::map<std::string, ParamValue>& given);

  [[nodiscard]] bool boolean(std::string_view key) const;
  [[nodiscard]] std::int64_t integer(std::string_view key) const;
  [[nodiscard]] double number(std::string_view key) const;
  [[nodiscard]] const std::string& text(std::string_view key) const;
  [[nodiscard]] const std::vector<double>& numbers(std::string_view key) const;
  [[nodiscard]] const std::map<std::string, ParamValue, std::less<>>& values() const noexcept {
    return values_;
  }

 private:
  const ParamValue& at(std::string_view key) const;
  std::string stage_{};
  std::map<std::string, ParamValue, std::less<>> values_{};
};

/// Parses a command-line or YAML scalar ("3", "2.5", "true", "[1, 2]", "text") as `type`;
/// nullopt when it does not fit.
[[nodiscard]] std::optional<ParamValue> parse_param(std::string_view text, ParamType type);
[[nodiscard]] std::string format_param(const ParamValue& value);

}  // namespace micromodels
