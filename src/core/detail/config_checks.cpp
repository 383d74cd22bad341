#include "config_checks.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <vector>

#include "micromodels/params.hpp"

#include "redis_url.hpp"
#include "suggest.hpp"

namespace micromodels::detail {
namespace {

bool name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// "Face-Detect" -> "face_detect": the fix, spelled out.
std::string sanitized(std::string_view name) {
  std::string out;
  for (char c : name) {
    const char low = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += name_char(low) ? low : '_';
  }
  return out;
}

}  // namespace

std::string plain_number(double value) {
  std::string text = format_param(value);
  if (text.size() > 2 && text.ends_with(".0")) {
    text.resize(text.size() - 2);
  }
  return text;
}

std::string stage_label(std::string_view name, std::size_t index) {
  if (name.empty()) {
    return "stage #" + std::to_string(index + 1);
  }
  return "stage '" + std::string(name) + "'";
}

void fail(const SourceLocation& where, std::string_view subject, std::string_view key,
          const std::string& message) {
  std::string text;
  if (!subject.empty()) {
    text += std::string(subject) + ": ";
  }
  if (!key.empty()) {
    text += "key '" + std::string(key) + "': ";
  }
  throw ConfigError(where, std::string(key), text + message);
}

void check_stage_name(std::string_view name, const SourceLocation& where, std::size_t index) {
  const std::string subject = stage_label(name, index);
  if (name.empty()) {
    fail(where, subject, "name", "missing; every stage needs a unique name, e.g. name: detect");
  }
  for (char c : name) {
    if (!name_char(c)) {
      fail(where, subject, "name",
           in_quotes(name) +
               " is not a valid stage name; use lower-case letters, digits and '_', "
               "e.g. " +
               sanitized(name));
    }
  }
}

void check_broker(std::string_view broker, const SourceLocation& where) {
  if (broker == "memory") {
    return;
  }
  if (broker.find("://") != std::string_view::npos) {
    try {
      (void)parse_redis_url(broker);  // the grammar, and a password or TLS refused
      return;
    } catch (const ConfigError& error) {
      fail(where, "", "broker", error.what());
    }
  }
  const std::string hint = did_you_mean(broker, {"memory"});
  fail(where, "", "broker",
       "unknown broker " + in_quotes(broker) + (hint.empty() ? "; use" : hint + " Use") +
           " memory (in this process) or redis://host:port");
}

void check_wire_images(std::string_view images, const SourceLocation& where) {
  const std::vector<std::string> valid = {"raw", "png", "jpeg"};
  if (std::find(valid.begin(), valid.end(), images) != valid.end()) {
    return;
  }
  fail(where, "", "wire.images", "unknown value " + in_quotes(images) +
                                     unknown_hint(images, valid, "values") +
                                     " (png is lossless, jpeg lossy, with wire.jpeg_quality)");
}

void check_count(std::int64_t value, std::int64_t min, std::int64_t max,
                 const SourceLocation& where, std::string_view subject, std::string_view key) {
  if (value < min || value > max) {
    fail(where, subject, key,
         "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
             std::to_string(value));
  }
}

void check_megabytes(double value, const SourceLocation& where, std::string_view key) {
  if (!std::isfinite(value) || value <= 0) {
    fail(where, "", key, "must be more than 0 (megabytes), got " + plain_number(value));
  }
}

void check_max_age(double value, const SourceLocation& where, std::string_view subject,
                   std::string_view key) {
  if (!std::isfinite(value) || value < 0 || value > kMaxAgeMs) {
    fail(where, subject, key,
         "must be from 0 (no age limit) to " + plain_number(kMaxAgeMs) +
             " milliseconds, got " + plain_number(value) +
             "; a live budget is a packet's most age since capture, e.g. 120");
  }
}

void check_duration(double value, bool positive, const SourceLocation& where,
                    std::string_view subject, std::string_view key) {
  if (!std::isfinite(value) || value < 0 || (positive && value == 0)) {
    fail(where, subject, key,
         std::string(positive ? "must be more than 0" : "must be 0 or more") +
             " (milliseconds), got " + plain_number(value));
  }
}

}  // namespace micromodels::detail
