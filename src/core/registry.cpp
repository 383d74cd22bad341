#include "micromodels/registry.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>

namespace micromodels {
namespace {

bool valid_type_name(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) == 0 && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

// An integer will do for a number: resolve makes it a double.
bool default_fits(const ParamValue& value, ParamType type) {
  switch (type) {
    case ParamType::boolean:
      return std::holds_alternative<bool>(value);
    case ParamType::integer:
      return std::holds_alternative<std::int64_t>(value);
    case ParamType::number:
      return std::holds_alternative<double>(value) || std::holds_alternative<std::int64_t>(value);
    case ParamType::text:
      return std::holds_alternative<std::string>(value);
    case ParamType::numbers:
      return std::holds_alternative<std::vector<double>>(value);
  }
  return false;
}

// What is wrong with a param as its stage type declares it, or "": a mistake of the type's
// author, found when the type is registered rather than when a pipeline leaves the param out.
std::string spec_problem(const ParamSpec& spec) {
  if (spec.default_value && !default_fits(*spec.default_value, spec.type)) {
    return "the default is not of type " + std::string(param_type_name(spec.type));
  }
  const ParamRange& range = spec.range;
  if (!range.low && !range.high) return "";
  if (spec.type != ParamType::integer && spec.type != ParamType::number &&
      spec.type != ParamType::numbers) {
    return "a range is for integer, number and list of numbers params, not " +
           std::string(param_type_name(spec.type));
  }
  if (range.low && range.high && !(*range.low < *range.high || range.contains(*range.low))) {
    return "the range (" + range.str() + ") holds no value";
  }
  if (spec.default_value && !range.contains(*spec.default_value)) {
    return "the default " + format_param(*spec.default_value) + " is not " + range.str() +
           (spec.type == ParamType::numbers ? " each" : "");
  }
  return "";
}

}  // namespace

Params StageType::resolve(std::string_view stage,
                          const std::map<std::string, ParamValue>& given) const {
  if (!more_params) return Params::resolve(stage, params, given);
  // First the type's own params, which say where the others are declared.
  std::map<std::string, ParamValue> own;
  for (const ParamSpec& spec : params) {
    if (const auto found = given.find(spec.name); found != given.end()) own.insert(*found);
  }
  std::vector<ParamSpec> all = params;
  for (ParamSpec& spec : more_params(Params::resolve(stage, params, own))) {
    const bool taken = std::any_of(all.begin(), all.end(),
                                   [&](const ParamSpec& s) { return s.name == spec.name; });
    if (taken) {
      throw ParamError(spec.name, "stage '" + std::string(stage) + "': param '" + spec.name +
                                      "': declared again; type '" + name +
                                      "' has a param of that name, rename the other");
    }
    if (const std::string problem = spec_problem(spec); !problem.empty()) {
      throw ParamError(spec.name,
                       "stage '" + std::string(stage) + "': param '" + spec.name + "': " + problem);
    }
    all.push_back(std::move(spec));
  }
  return Params::resolve(stage, all, given);
}

Registry Registry::with_builtins() {
  Registry registry;
  register_builtin_stages(registry);
  return registry;
}

Registry& Registry::global() {
  static Registry registry = with_builtins();
  return registry;
}

void Registry::add(StageType type) {
  const std::string where = "stage type '" + type.name + "': ";
  if (!valid_type_name(type.name)) {
    throw std::invalid_argument(where + "a type name is letters, digits, '_', '.' or '-'");
  }
  if (types_.contains(type.name)) {
    throw std::invalid_argument(where + "already registered");
  }
  if (static_cast<bool>(type.make) == static_cast<bool>(type.make_source)) {
    throw std::invalid_argument(where + "set exactly one of make (a stage) and make_source");
  }
  std::set<std::string, std::less<>> seen;
  for (const ParamSpec& spec : type.params) {
    if (spec.name.empty()) {
      throw std::invalid_argument(where + "a param has no name");
    }
    if (!seen.insert(spec.name).second) {
      throw std::invalid_argument(where + "param '" + spec.name + "' is declared twice");
    }
    if (const std::string problem = spec_problem(spec); !problem.empty()) {
      throw std::invalid_argument(where + "param '" + spec.name + "': " + problem);
    }
  }
  // A type that says nothing of its fields requires none and writes none; what it reads is
  // unknown, so on Redis it gets whole packets.
  if (!type.info) {
    type.info = [](const Params&) { return StageInfo{.reads_all = true}; };
  }
  std::string name = type.name;
  types_.emplace(std::move(name), std::move(type));
}

const StageType* Registry::find(std::string_view name) const {
  auto found = types_.find(name);
  return found == types_.end() ? nullptr : &found->second;
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> names;
  names.reserve(types_.size());
  for (const auto& entry : types_) {
    names.push_back(entry.first);
  }
  return names;
}

}  // namespace micromodels
