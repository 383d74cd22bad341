#include "status_view.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

namespace micromodels::cli {

namespace {

using Json = nlohmann::json;

constexpr const char* kBold = "\x1b[1m";
constexpr const char* kReverse = "\x1b[7m";
constexpr const char* kRed = "\x1b[31m";
constexpr const char* kReset = "\x1b[0m";

std::string printf_text(const char* format, auto... values) {
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, format, values...);
  return buffer;
}

double number_or(const Json& object, const char* key, double fallback) {
  return object.contains(key) && object[key].is_number() ? object[key].get<double>() : fallback;
}

std::string duration_us(double us) {
  if (us <= 0) return "-";
  if (us < 10) return printf_text("%.1fµs", us);
  if (us < 1e3) return printf_text("%.0fµs", us);
  if (us < 1e6) return printf_text("%.1fms", us / 1e3);
  return printf_text("%.2fs", us / 1e6);
}

std::string rate(const Json& value) {
  if (!value.is_number()) return "-";
  const double r = value.get<double>();
  return r >= 100 ? printf_text("%.0f", r) : printf_text("%.1f", r);
}

std::string clock_time(double seconds) {
  const auto s = static_cast<long long>(seconds);
  return s >= 3600 ? printf_text("%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60)
                   : printf_text("%lld:%02lld", s / 60, s % 60);
}

// Pads to `width` display columns; "µ" is two bytes but one column.
std::string pad(const std::string& text, std::size_t width, bool left) {
  std::size_t columns = 0;
  for (const char c : text) columns += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  if (columns >= width) return text;
  const std::string fill(width - columns, ' ');
  return left ? text + fill : fill + text;
}

}  // namespace

int plain_width() {
  const char* columns = std::getenv("COLUMNS");
  const int width = columns != nullptr ? std::atoi(columns) : 0;
  return width > 40 ? width : 132;
}

std::string render_status(const Json& status, const StatusViewStyle& style) {
  const std::string bottleneck = status.contains("bottleneck") && status["bottleneck"].is_string()
                                     ? status["bottleneck"].get<std::string>()
                                     : std::string();
  std::string out;
  const auto emphasis = [&](const char* code, const std::string& text) {
    return style.ansi ? code + text + kReset : text;
  };

  out += emphasis(kBold, status.value("pipeline", std::string("?")));
  out += "  elapsed " + clock_time(number_or(status, "elapsed_s", 0));
  out += printf_text("  packets in %llu out %llu in flight %llu",
                     static_cast<unsigned long long>(number_or(status, "packets_in", 0)),
                     static_cast<unsigned long long>(number_or(status, "packets_out", 0)),
                     static_cast<unsigned long long>(number_or(status, "in_flight", 0)));
  out += "  throughput " + rate(status.value("throughput_per_s", Json())) + "/s\n\n";

  // stage, type, consumers, queue, rate, p50, p99 and then the busy bar with what is left.
  std::size_t name_width = 5;
  std::size_t type_width = 4;
  for (const Json& stage : status.value("stages", Json::array())) {
    name_width = std::max(name_width, stage.value("name", std::string()).size());
    type_width = std::max(type_width, stage.value("type", std::string()).size());
  }
  const std::size_t fixed =
      name_width + 2 + type_width + 2 + 9 + 2 + 13 + 2 + 8 + 2 + 8 + 2 + 8 + 2 + 5 + 2;
  const int bar_width =
      std::clamp(style.width - static_cast<int>(fixed) - 2 - 14, 0, 40);  // 14: "  ◀ bottleneck"

  std::string header = pad("stage", name_width, true) + "  " + pad("type", type_width, true) +
                       "  " + pad("consumers", 9, false) + "  " + pad("queue now/cap", 13, false) +
                       "  " + pad("rate/s", 8, false) + "  " + pad("p50", 8, false) + "  " +
                       pad("p99", 8, false) + "  " + pad("busy", 5, false);
  if (bar_width > 0) header += "  " + pad("", static_cast<std::size_t>(bar_width) + 2, true);
  if (style.ansi) {
    out += kReverse + pad(header, static_cast<std::size_t>(style.width), true) + kReset + "\n";
  } else {
    out += header.substr(0, header.find_last_not_of(' ') + 1) + "\n";
  }

  for (const Json& stage : status.value("stages", Json::array())) {
    const std::string name = stage.value("name", std::string());
    // The busy share of the last window when there is one: after a scale it shows the change.
    const Json recent = stage.value("recent_busy_share", Json());
    const double busy =
        recent.is_number() ? recent.get<double>() : number_or(stage, "busy_share", 0);
    const Json service = stage.value("service_us", Json::object());
    std::string row =
        pad(name, name_width, true) + "  " +
        pad(stage.value("type", std::string()), type_width, true) + "  " +
        pad(std::to_string(stage.value("consumers", 0)), 9, false) + "  " +
        pad(printf_text("%llu/%llu",
                        static_cast<unsigned long long>(number_or(stage, "queue_depth", 0)),
                        static_cast<unsigned long long>(number_or(stage, "queue_capacity", 0))),
            13, false) +
        "  " + pad(rate(stage.value("rate_per_s", Json())), 8, false) + "  " +
        pad(duration_us(number_or(service, "p50", 0)), 8, false) + "  " +
        pad(duration_us(number_or(service, "p99", 0)), 8, false) + "  " +
        pad(printf_text("%.0f%%", busy * 100), 5, false);
    if (bar_width > 0) {
      const auto filled = static_cast<int>(std::lround(busy * bar_width));
      row +=
          "  [" + std::string(static_cast<std::size_t>(std::clamp(filled, 0, bar_width)), '#') +
          std::string(static_cast<std::size_t>(bar_width - std::clamp(filled, 0, bar_width)), ' ') +
          "]";
    }
    if (name == bottleneck) {
      row += "  ◀ bottleneck";
      if (style.ansi) row = std::string(kBold) + kRed + row + kReset;
    }
    out += row + "\n";
  }
  // Live figures, when there are any: the age of what the last stages put out, drops by
  // reason, and the events stages counted.
  std::string ages;
  std::string drops;
  std::string events;
  for (const Json& stage : status.value("stages", Json::array())) {
    const std::string name = stage.value("name", std::string());
    const Json age = stage.value("age_us", Json());
    if (age.is_object()) {
      ages += (ages.empty() ? "" : ", ") + name + " p50 " + duration_us(number_or(age, "p50", 0)) +
              " p99 " + duration_us(number_or(age, "p99", 0));
    }
    const auto for_age = static_cast<unsigned long long>(number_or(stage, "dropped_age", 0));
    const auto newest = static_cast<unsigned long long>(number_or(stage, "dropped_newest", 0));
    const auto unserved = static_cast<unsigned long long>(number_or(stage, "dropped_unserved", 0));
    if (for_age + newest + unserved > 0) {
      drops += (drops.empty() ? "" : ", ") + name +
               printf_text(" age %llu newest %llu", for_age, newest) +
               (unserved > 0 ? printf_text(" unserved %llu", unserved) : std::string());
    }
    const Json counted = stage.value("events", Json::object());
    if (counted.is_object() && !counted.empty()) {
      events += (events.empty() ? "" : "; ") + name;
      for (const auto& [event, n] : counted.items()) {
        events += " " + event + printf_text(" %llu", static_cast<unsigned long long>(
                                                          n.is_number() ? n.get<double>() : 0));
      }
    }
  }
  const bool gap = ages.empty() && drops.empty();
  if (!ages.empty()) out += "\nage: " + ages + "\n";
  if (!drops.empty()) out += (ages.empty() ? "\n" : "") + std::string("dropped: ") + drops + "\n";
  if (!events.empty()) out += (gap ? "\n" : "") + std::string("events: ") + events + "\n";
  // A run across processes: the stages only other processes serve, as the broker sees them.
  std::set<std::string> here;
  for (const Json& stage : status.value("stages", Json::array())) {
    here.insert(stage.value("name", std::string()));
  }
  std::string elsewhere;
  for (const Json& stage : status.value("broker", Json::array())) {
    const std::string name = stage.value("stage", std::string());
    if (here.contains(name)) continue;
    elsewhere += "  " + pad(name, name_width, true) +
                 printf_text(
                     "  consumers %llu  backlog %llu  pending %llu  processed %llu  "
                     "failed %llu  dropped %llu\n",
                     static_cast<unsigned long long>(number_or(stage, "consumers", 0)),
                     static_cast<unsigned long long>(number_or(stage, "backlog", 0)),
                     static_cast<unsigned long long>(number_or(stage, "pending", 0)),
                     static_cast<unsigned long long>(number_or(stage, "processed", 0)),
                     static_cast<unsigned long long>(number_or(stage, "failed", 0)),
                     static_cast<unsigned long long>(number_or(stage, "dropped", 0)));
  }
  if (!elsewhere.empty()) out += "\nserved by other processes (Redis's view):\n" + elsewhere;
  // No bottleneck after the first second: nothing moved (/status's idle rule).
  const bool idle = status.contains("window_s") && status["window_s"].is_number();
  out += "\nbottleneck: " +
         (!bottleneck.empty() ? bottleneck
          : idle              ? std::string("none (idle: nothing moved in the last second)")
                              : std::string("none yet")) +
         (elsewhere.empty() || bottleneck.empty() ? "" : " (of the stages served here)") + "\n";
  return out;
}

}  // namespace micromodels::cli
