// Stage types by name.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "micromodels/params.hpp"
#include "micromodels/stage.hpp"

namespace micromodels {

/// A registered stage type: its parameters, what an instance reads and writes, and a factory.
/// Exactly one of `make` and `make_source` is set.
struct StageType {
  std::string name{};
  std::string help{};
  std::vector<ParamSpec> params{};
  /// Params declared by what the others name (a `python` stage's class declares its own): the
  /// specs added to `params`, given the values of those. Empty: `params` are all there are.
  std::function<std::vector<ParamSpec>(const Params&)> more_params{};
  std::function<StageInfo(const Params&)> info{};  // empty: reads all, requires and writes none
  std::function<std::unique_ptr<Stage>(const Params&)> make{};
  std::function<std::unique_ptr<Source>(const Params&)> make_source{};

  [[nodiscard]] bool is_source() const noexcept { return static_cast<bool>(make_source); }
  /// The params of an instance of stage `stage`: `given` checked against `params` and
  /// `more_params` (Params::resolve). Throws ParamError.
  [[nodiscard]] Params resolve(std::string_view stage,
                               const std::map<std::string, ParamValue>& given) const;
};

/// Maps type names (`face.detect`, `model.sleep`, ...) to stage types.
///
///   Registry registry = Registry::with_builtins();
///   registry.add({.name = "my.negate", .info = [](const Params&) { return StageInfo{{"x"}, {"x"}}; },
///                 .make = [](const Params&) { return std::make_unique<Negate>(); }});
class Registry {
 public:
  /// A registry holding the generic built-in stages (synthetic source, model, pass, jsonl sink).
  static Registry with_builtins();
  /// The process-wide registry used by the command-line tool and by default everywhere.
  static Registry& global();

  /// Adds a type; throws std::invalid_argument on a duplicate or incomplete type.
  void add(StageType type);
  [[nodiscard]] const StageType* find(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> names() const;

 private:
  std::map<std::string, StageType, std::less<>> types_{};
};

/// Registers the generic built-in stages into `registry`.
void register_builtin_stages(Registry& registry);

}  // namespace micromodels
