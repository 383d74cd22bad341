#include "micromodels/params.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

#include "detail/suggest.hpp"

namespace micromodels {
namespace {

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && is_space(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return out;
}

// from_chars rejects a leading '+', which people write on command lines ("+5").
std::string_view without_plus(std::string_view text) {
  if (text.size() > 1 && text.front() == '+' && text[1] != '-' && text[1] != '+') {
    text.remove_prefix(1);
  }
  return text;
}

std::optional<std::int64_t> parse_integer(std::string_view text) {
  text = without_plus(trim(text));
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> parse_number(std::string_view text) {
  text = without_plus(trim(text));
  // from_chars also takes "inf", "nan" and hex floats; a parameter is a plain finite decimal.
  const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '.' || c == 'e' || c == 'E' ||
           c == '-' || c == '+';
  });
  if (!plain) {
    return std::nullopt;
  }
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || ptr != end || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> parse_boolean(std::string_view text) {
  const std::string word = lowered(trim(text));
  if (word == "true" || word == "yes" || word == "on" || word == "1") {
    return true;
  }
  if (word == "false" || word == "no" || word == "off" || word == "0") {
    return false;
  }
  return std::nullopt;
}

// "[1, 2.5]", "1,2.5", "1 2.5" and "[]" all parse: brackets are optional on a command line.
std::optional<std::vector<double>> parse_numbers(std::string_view text) {
  text = trim(text);
  if (!text.empty() && text.front() == '[') {
    if (text.back() != ']') {
      return std::nullopt;
    }
    text = trim(text.substr(1, text.size() - 2));
  }
  std::vector<double> values;
  if (text.empty()) {
    return values;
  }
  // With commas, every comma-separated item must be a number ("1,,2" and "1," are mistakes);
  // without, items are separated by blanks.
  const bool commas = text.find(',') != std::string_view::npos;
  const std::string_view separators = commas ? std::string_view(",") : std::string_view(" \t");
  std::size_t start = 0;
  while (true) {
    const std::size_t stop = text.find_first_of(separators, start);
    const std::string_view item =
        trim(text.substr(start, stop == std::string_view::npos ? stop : stop - start));
    if (!item.empty() || commas) {
      std::optional<double> value = parse_number(item);
      if (!value) {
        return std::nullopt;
      }
      values.push_back(*value);
    }
    if (stop == std::string_view::npos) {
      break;
    }
    start = stop + 1;
  }
  return values;
}

std::string format_double(double value, bool mark_as_number) {
  char buffer[64];
  auto [ptr, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, error == std::errc() ? ptr : buffer);
  // "3" would read back as an integer; "3.0" keeps a number a number through a round trip.
  if (mark_as_number && text.find_first_of(".eEn") == std::string::npos) {
    text += ".0";
  }
  return text;
}

// "an integer", for "expected an integer, got ...".
std::string_view expected_phrase(ParamType type) {
  switch (type) {
    case ParamType::boolean:
      return "true or false";
    case ParamType::integer:
      return "an integer";
    case ParamType::number:
      return "a number";
    case ParamType::text:
      return "text";
    case ParamType::numbers:
      return "a list of numbers such as [1, 2.5]";
  }
  return "?";
}

// How a given value reads in a message: text in quotes, so "10" (text) and 10 differ visibly.
std::string shown(const ParamValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    return detail::in_quotes(*text);
  }
  return format_param(value);
}

// The value converted to `type`, or nullopt. Text arrives from the command line and from quoted
// YAML; it is parsed here, where the declared type is known.
std::optional<ParamValue> coerce(const ParamValue& value, ParamType type) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    return parse_param(*text, type);
  }
  switch (type) {
    case ParamType::boolean:
      if (std::holds_alternative<bool>(value)) {
        return value;
      }
      break;
    case ParamType::integer:
      if (std::holds_alternative<std::int64_t>(value)) {
        return value;
      }
      break;
    case ParamType::number:
      if (const auto* integer = std::get_if<std::int64_t>(&value)) {
        return static_cast<double>(*integer);
      }
      if (std::holds_alternative<double>(value)) {
        return value;
      }
      break;
    case ParamType::text:
      break;  // a number where text is expected is refused rather than reformatted
    case ParamType::numbers:
      if (std::holds_alternative<std::vector<double>>(value)) {
        return value;
      }
      break;
  }
  return std::nullopt;
}

std::string prefix(std::string_view stage, std::string_view key) {
  return "stage '" + std::string(stage) + "': param '" + std::string(key) + "': ";
}

std::vector<std::string> spec_names(const std::vector<ParamSpec>& specs) {
  std::vector<std::string> names;
  names.reserve(specs.size());
  for (const ParamSpec& spec : specs) {
    names.push_back(spec.name);
  }
  return names;
}

}  // namespace

bool ParamRange::contains(const ParamValue& value) const noexcept {
  const auto within = [this](double x) {
    const bool above_low = !low || (low_exclusive ? x > *low : x >= *low);
    const bool below_high = !high || (high_exclusive ? x < *high : x <= *high);
    return above_low && below_high;
  };
  if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    return within(static_cast<double>(*integer));
  }
  if (const auto* number = std::get_if<double>(&value)) {
    return within(*number);
  }
  if (const auto* list = std::get_if<std::vector<double>>(&value)) {
    return std::all_of(list->begin(), list->end(), within);
  }
  return true;
}

std::string ParamRange::str() const {
  if (low && high && !low_exclusive && !high_exclusive) {
    return "within " + format_double(*low, false) + ".." + format_double(*high, false);
  }
  std::string text;
  if (low) {
    text = (low_exclusive ? "above " : "at least ") + format_double(*low, false);
  }
  if (high) {
    text += low ? " and " : "";
    text += (high_exclusive ? "below " : "at most ") + format_double(*high, false);
  }
  return text;
}

std::string_view param_type_name(ParamType type) noexcept {
  switch (type) {
    case ParamType::boolean:
      return "boolean";
    case ParamType::integer:
      return "integer";
    case ParamType::number:
      return "number";
    case ParamType::text:
      return "text";
    case ParamType::numbers:
      return "list of numbers";
  }
  return "unknown";
}

std::optional<ParamValue> parse_param(std::string_view text, ParamType type) {
  switch (type) {
    case ParamType::boolean:
      if (auto value = parse_boolean(text)) {
        return ParamValue(*value);
      }
      break;
    case ParamType::integer:
      if (auto value = parse_integer(text)) {
        return ParamValue(*value);
      }
      break;
    case ParamType::number:
      if (auto value = parse_number(text)) {
        return ParamValue(*value);
      }
      break;
    case ParamType::text:
      return ParamValue(std::string(text));
    case ParamType::numbers:
      if (auto value = parse_numbers(text)) {
        return ParamValue(std::move(*value));
      }
      break;
  }
  return std::nullopt;
}

std::string format_param(const ParamValue& value) {
  struct Formatter {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return format_double(d, true); }
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(const std::vector<double>& list) const {
      std::string out = "[";
      for (std::size_t i = 0; i < list.size(); ++i) {
        out += (i == 0 ? "" : ", ") + format_double(list[i], false);
      }
      return out + "]";
    }
  };
  return std::visit(Formatter{}, value);
}

Params Params::resolve(std::string_view stage, const std::vector<ParamSpec>& specs,
                       const std::map<std::string, ParamValue>& given) {
  for (const auto& entry : given) {
    const std::string& key = entry.first;
    const bool known = std::any_of(specs.begin(), specs.end(),
                                   [&key](const ParamSpec& spec) { return spec.name == key; });
    if (known) {
      continue;
    }
    std::string message = prefix(stage, key) + "unknown param";
    if (specs.empty()) {
      message += "; this stage type takes no params, remove it";
    } else {
      message += detail::unknown_hint(key, spec_names(specs), "params");
    }
    throw ParamError(key, message);
  }

  Params params;
  params.stage_ = std::string(stage);
  for (const ParamSpec& spec : specs) {
    auto found = given.find(spec.name);
    const ParamValue* value = nullptr;
    if (found != given.end()) {
      value = &found->second;
    } else if (spec.default_value) {
      value = &*spec.default_value;
    } else {
      std::string message = prefix(stage, spec.name) + "required but not given; set it under " +
                            "params (" + std::string(param_type_name(spec.type));
      message += spec.help.empty() ? ")" : ": " + spec.help + ")";
      throw ParamError(spec.name, message);
    }
    std::optional<ParamValue> typed = coerce(*value, spec.type);
    if (!typed) {
      std::string message = prefix(stage, spec.name) + "expected " +
                            std::string(expected_phrase(spec.type)) + ", got " + shown(*value);
      if (spec.type == ParamType::text) {
        message += "; put the value in quotes";
      } else if (found == given.end()) {
        message += " (the stage type's own default is wrong)";
      }
      throw ParamError(spec.name, message);
    }
    if (!spec.range.contains(*typed)) {
      // A number as written ("5", not "5.0"); a list whole ("[0, 224]"), its numbers each.
      const auto* number = std::get_if<double>(&*typed);
      std::string message =
          "stage '" + std::string(stage) + "': param '" + spec.name + "' must be " +
          spec.range.str() + (spec.type == ParamType::numbers ? " each" : "") + "; got " +
          (number != nullptr ? format_double(*number, false) : format_param(*typed));
      if (found == given.end()) {
        message += " (the stage type's own default is wrong)";
      }
      throw ParamError(spec.name, message);
    }
    params.values_.emplace(spec.name, std::move(*typed));
  }
  return params;
}

const ParamValue& Params::at(std::string_view key) const {
  auto found = values_.find(key);
  if (found == values_.end()) {
    std::vector<std::string> names;
    for (const auto& entry : values_) {
      names.push_back(entry.first);
    }
    throw ParamError(std::string(key), prefix(stage_, key) +
                                           "not declared by the stage type; declared params: " +
                                           detail::join_names(names));
  }
  return found->second;
}

namespace {

template <class T>
const T& typed_at(const ParamValue& value, std::string_view stage, std::string_view key,
                  ParamType wanted) {
  const T* typed = std::get_if<T>(&value);
  if (typed == nullptr) {
    throw ParamError(std::string(key), prefix(stage, key) + "read as " +
                                           std::string(param_type_name(wanted)) + " but holds " +
                                           shown(value));
  }
  return *typed;
}

}  // namespace

bool Params::boolean(std::string_view key) const {
  return typed_at<bool>(at(key), stage_, key, ParamType::boolean);
}

std::int64_t Params::integer(std::string_view key) const {
  return typed_at<std::int64_t>(at(key), stage_, key, ParamType::integer);
}

double Params::number(std::string_view key) const {
  const ParamValue& value = at(key);
  // Resolved params hold doubles for numbers; a hand-made Params may hold an integer.
  if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    return static_cast<double>(*integer);
  }
  return typed_at<double>(value, stage_, key, ParamType::number);
}

const std::string& Params::text(std::string_view key) const {
  return typed_at<std::string>(at(key), stage_, key, ParamType::text);
}

const std::vector<double>& Params::numbers(std::string_view key) const {
  return typed_at<std::vector<double>>(at(key), stage_, key, ParamType::numbers);
}

}  // namespace micromodels
