// Formatting of metrics snapshots: a table for people, JSON for scripts, Prometheus for scrapers.
#include "micromodels/metrics.hpp"

#include "capacity_model.hpp"
#include "detail/text_table.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

namespace micromodels {

namespace {

// ---------------------------------------------------------------------------------------------
// Number formatting shared by the outputs.

// snprintf into a std::string; callers format one number at a time, so one small buffer suffices.
template <class... Args>
std::string printf_string(const char* format, Args... args) {
  char buffer[64];
  const int n = std::snprintf(buffer, sizeof buffer, format, args...);
  return std::string(buffer, static_cast<std::size_t>(std::clamp(n, 0, int{sizeof buffer} - 1)));
}

// A duration in microseconds with about three significant digits and its unit, so that a column
// mixing 3µs and 1.2s stays readable.
std::string format_duration_us(double us) {
  if (!std::isfinite(us) || us < 0) return "-";
  if (us < 10) return printf_string("%.1fµs", us);
  if (us < 999.5) return printf_string("%.0fµs", us);
  const double ms = us / 1e3;
  if (ms < 9.995) return printf_string("%.2fms", ms);
  if (ms < 99.95) return printf_string("%.1fms", ms);
  if (ms < 999.5) return printf_string("%.0fms", ms);
  return printf_string("%.2fs", us / 1e6);
}

std::string format_latency(const Latency& latency, double value_us) {
  // With no samples a percentile of 0 would read as "instant"; a dash says "nothing measured".
  return latency.count == 0 ? std::string("-") : format_duration_us(value_us);
}

std::string format_percent(double share) {
  if (!std::isfinite(share)) return "-";
  return printf_string("%.0f%%", share * 100.0);
}

std::string format_rate(double per_s) {
  if (!std::isfinite(per_s)) return "-";
  if (per_s < 10) return printf_string("%.2f", per_s);
  if (per_s < 1000) return printf_string("%.1f", per_s);
  return printf_string("%.0f", per_s);
}

double per_second(std::uint64_t count, double elapsed_s) {
  return elapsed_s > 0 ? static_cast<double>(count) / elapsed_s : 0.0;
}

double throughput(const MetricsSnapshot& m) { return per_second(m.packets_out, m.elapsed_s); }

// Prometheus floats: the shortest text that reads back as the same double, laid out as Go's
// strconv.FormatFloat(v, 'g', -1, 64) does (what the official clients write), because Prometheus
// 2.x compares `le` label values as text: le="0.0001" and le="1e-04" would be different series.
std::string prometheus_float(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  const auto scientific =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  const std::string text(buffer, scientific.ptr);
  const int exponent = std::atoi(text.c_str() + text.find('e') + 1);
  if (exponent < -4 || exponent >= 6) return text;  // Go's rule for the shortest 'g' format
  const auto fixed = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
  return std::string(buffer, fixed.ptr);
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4.

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

class PrometheusWriter {
 public:
  explicit PrometheusWriter(const std::string& pipeline)
      : pipeline_label_("pipeline=\"" + escape_label_value(pipeline) + "\"") {}

  // Every family is written whole, HELP and TYPE first: the format requires a family's samples
  // to be contiguous.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
  }

  void sample(std::string_view name, const StageMetrics* stage, const std::string& value,
              std::string_view extra_label = {}) {
    out_ << name << '{' << pipeline_label_;
    if (stage != nullptr) out_ << ",stage=\"" << escape_label_value(stage->name) << '"';
    if (!extra_label.empty()) out_ << ',' << extra_label;
    out_ << "} " << value << '\n';
  }

  void histogram(std::string_view name, const StageMetrics& stage, const Latency& latency) {
    const std::string bucket = std::string(name) + "_bucket";
    // The snapshot reads each counter on its own while packets complete, so a later bucket can
    // lag an earlier one by a packet or two; a scraper must never see a cumulative count fall.
    std::uint64_t cumulative = 0;
    for (const auto& [upper_us, count] : latency.buckets) {
      if (std::isinf(upper_us)) continue;  // the +Inf bucket is written below from `count`
      cumulative = std::max(cumulative, count);
      sample(bucket, &stage, std::to_string(cumulative),
             "le=\"" + prometheus_float(upper_us / 1e6) + '"');
    }
    const std::uint64_t total = std::max(cumulative, latency.count);
    sample(bucket, &stage, std::to_string(total), "le=\"+Inf\"");
    sample(std::string(name) + "_sum", &stage, prometheus_float(latency.sum_us / 1e6));
    sample(std::string(name) + "_count", &stage, std::to_string(total));
  }

  [[nodiscard]] std::string str() const { return out_.str(); }

 private:
  std::string pipeline_label_;
  std::ostringstream out_;
};

}  // namespace

const StageMetrics* MetricsSnapshot::stage(const std::string& name) const {
  const auto it = std::find_if(stages.begin(), stages.end(),
                               [&](const StageMetrics& s) { return s.name == name; });
  return it == stages.end() ? nullptr : &*it;
}

std::optional<Bottleneck> MetricsSnapshot::bottleneck(const MetricsSnapshot* before) const {
  const std::vector<detail::StageLoad> loads = detail::stage_loads(*this, before);
  const detail::Capacity limit = detail::capacity(loads, workers);
  if (loads.empty() || !std::isfinite(limit.rate)) return std::nullopt;
  if (!limit.stage) return Bottleneck{.name = "worker pool", .pool = true, .rate_per_s = limit.rate};
  return Bottleneck{.name = loads[*limit.stage].name, .rate_per_s = limit.rate};
}

std::string MetricsSnapshot::to_table() const {
  const std::vector<detail::TableColumn> columns = {
      {"", "stage", true},
      {"", "consumers"},
      {"", "processed"},
      {"", "rate/s"},
      {"", "failed"},
      {"dropped", "all"},
      {"dropped", "age"},
      {"dropped", "newest"},
      {"dropped", "unserved"},
      {"", "dead-lettered"},
      {"queue", "now/max/cap"},
      {"queue wait", "p50"},
      {"queue wait", "p99"},
      {"service time", "p50"},
      {"service time", "p95"},
      {"service time", "p99"},
      {"age", "p50"},
      {"age", "p99"},
      {"", "busy"},
  };
  std::vector<std::vector<std::string>> rows;
  rows.reserve(stages.size());
  for (const StageMetrics& s : stages) {
    rows.push_back({
        s.name,
        std::to_string(s.consumers),
        std::to_string(s.processed),
        format_rate(per_second(s.processed, elapsed_s)),
        std::to_string(s.failed),
        std::to_string(s.dropped),
        std::to_string(s.dropped_age),
        std::to_string(s.dropped_newest),
        std::to_string(s.dropped_unserved),
        std::to_string(s.dead_lettered),
        std::to_string(s.queue_depth) + '/' + std::to_string(s.queue_max) + '/' +
            std::to_string(s.queue_capacity),
        format_latency(s.queue_wait, s.queue_wait.p50_us),
        format_latency(s.queue_wait, s.queue_wait.p99_us),
        format_latency(s.service, s.service.p50_us),
        format_latency(s.service, s.service.p95_us),
        format_latency(s.service, s.service.p99_us),
        format_latency(s.age, s.age.p50_us),
        format_latency(s.age, s.age.p99_us),
        format_percent(s.busy_share),
    });
  }
  std::string out = detail::render_table(columns, rows);
  // Events are named by each stage: one line for the stages that counted any.
  std::string events;
  for (const StageMetrics& s : stages) {
    if (s.events.empty()) continue;
    events += (events.empty() ? "events: " : "; ") + s.name;
    for (const auto& [event, n] : s.events) events += ' ' + event + ' ' + std::to_string(n);
  }
  if (!events.empty()) out += events + '\n';
  // Rates of the run, not sums over its sinks: in is what the sources made (frames), out what
  // the last stages are done with, once per packet; each stage's own is in its row.
  out += "elapsed " + printf_string("%.2f", elapsed_s) + " s, packets in " +
         std::to_string(packets_in) + " (" + format_rate(per_second(packets_in, elapsed_s)) +
         "/s), out " + std::to_string(packets_out) + " (" + format_rate(throughput(*this)) +
         "/s)\n";
  out += bottleneck_report();
  return out;
}

namespace {

// A stage whose queue drops what does not fit is left out of the bound (it never holds the
// stages before it back), so the line above it names another limit; said beside it when such a
// stage did drop, since more consumers there would keep more packets.
std::string shed_note(const std::vector<StageMetrics>& stages) {
  std::string note;
  for (const StageMetrics& s : stages) {
    const std::uint64_t overflow =
        s.dropped - std::min(s.dropped, s.dropped_age + s.dropped_newest + s.dropped_unserved);
    if (!s.sheds || overflow == 0) continue;
    note += "  " + s.name + " dropped " + std::to_string(overflow) +
            " packets its queue had no room for (its overflow policy): it keeps up by dropping; "
            "more consumers there would keep more\n";
  }
  return note;
}

// The bottleneck line and what one more consumer or core would give.
std::string limit_report(const MetricsSnapshot& m) {
  const std::vector<detail::StageLoad> loads = detail::stage_loads(m);
  const detail::Capacity now = detail::capacity(loads, m.workers);
  if (loads.empty() || !std::isfinite(now.rate)) {
    return "bottleneck: none (no packet was measured)\n";
  }
  auto rate = [](double per_s) { return format_rate(per_s) + " packets/s"; };
  // In the bound's unit: packets entering (what the sources made) per second, not packets out,
  // which counts each of a split's packets, and packets dropped or filtered on the way.
  const std::string measured =
      " (measured " + format_rate(per_second(m.packets_in, m.elapsed_s)) + "/s in)\n";
  if (!now.stage) {
    double pool_demand = 0;
    for (const detail::StageLoad& load : loads) pool_demand += load.blocking ? 0 : load.demand_s;
    const detail::Capacity more_cores = detail::capacity(loads, m.workers + 1);
    return "bottleneck: the worker pool: " + std::to_string(m.workers) + " thread" +
           (m.workers == 1 ? "" : "s") + " for " + format_duration_us(pool_demand * 1e6) +
           " of CPU-bound work per packet = at most " + rate(now.rate) + measured +
           "  one more consumer adds nothing; more cores (" + std::to_string(m.workers + 1) +
           " workers: at most " + rate(more_cores.rate) +
           (more_cores.stage ? ", then " + loads[*more_cores.stage].name + " limits" : "") +
           ") or cheaper CPU-bound stages would\n";
  }
  const detail::StageLoad& limit = loads[*now.stage];
  std::string out = "bottleneck: " + limit.name + ": " + std::to_string(limit.consumers) +
                    " consumer" + (limit.consumers == 1 ? "" : "s") + " x " +
                    format_duration_us(limit.demand_s * 1e6) + " per packet = at most " +
                    rate(now.rate) + measured;
  if (m.stages[*now.stage].source) {
    out += "  a source has one consumer: it paces the pipeline (decoding, a camera's frame rate, "
           "a rate param)\n";
    return out;
  }
  if (limit.max_parallel > 0 && limit.consumers >= limit.max_parallel) {
    out += "  it is per_stream with " + std::to_string(limit.max_parallel) + " stream" +
           (limit.max_parallel == 1 ? "" : "s") +
           ": one more consumer adds nothing; more streams or a cheaper stage would\n";
    return out;
  }
  std::vector<detail::StageLoad> more = loads;
  ++more[*now.stage].consumers;
  const detail::Capacity next = detail::capacity(more, m.workers);
  out += "  one more consumer on " + limit.name + ": at most " + rate(next.rate);
  if (next.rate <= now.rate * 1.01) {
    out += ", no gain";
  }
  out += next.stage ? " (then " + loads[*next.stage].name + " limits)"
                    : " (then the " + std::to_string(m.workers) + " worker threads limit)";
  out += '\n';
  return out;
}

}  // namespace

std::string MetricsSnapshot::bottleneck_report() const {
  return limit_report(*this) + shed_note(stages);
}

std::string MetricsSnapshot::to_json() const {
  // ordered_json keeps the keys in the documented order, which is easier to read in a file.
  using Json = nlohmann::ordered_json;
  auto latency_json = [](const Latency& l) {
    return Json{{"p50", l.p50_us}, {"p95", l.p95_us}, {"p99", l.p99_us}, {"mean", l.mean_us}};
  };
  // Null where nothing was measured (stages other than the last ones).
  auto age_json = [&](const Latency& l) {
    if (l.count == 0) return Json(nullptr);
    Json j = latency_json(l);
    j["count"] = l.count;
    return j;
  };
  Json stage_list = Json::array();
  for (const StageMetrics& s : stages) {
    stage_list.push_back(Json{
        {"name", s.name},
        {"type", s.type},
        {"processed", s.processed},
        {"failed", s.failed},
        {"dropped", s.dropped},
        {"dropped_age", s.dropped_age},
        {"dropped_newest", s.dropped_newest},
        {"dropped_unserved", s.dropped_unserved},
        {"dead_lettered", s.dead_lettered},
        {"emitted", s.emitted},
        {"rate_per_s", per_second(s.processed, elapsed_s)},
        {"queue_depth", s.queue_depth},
        {"queue_max", s.queue_max},
        {"queue_capacity", s.queue_capacity},
        {"consumers", s.consumers},
        {"busy_share", s.busy_share},
        {"queue_wait_us", latency_json(s.queue_wait)},
        {"service_us", latency_json(s.service)},
        {"age_us", age_json(s.age)},
        {"events", s.events},
    });
  }
  const std::optional<Bottleneck> limit = bottleneck();
  const Json out{
      {"pipeline", pipeline},
      {"elapsed_s", elapsed_s},
      {"packets_in", packets_in},
      {"packets_out", packets_out},
      {"in_per_s", per_second(packets_in, elapsed_s)},
      {"throughput_per_s", throughput(*this)},
      {"bottleneck", limit ? Json(limit->name) : Json(nullptr)},
      {"stages", std::move(stage_list)},
      {"transport", transport},
  };
  // Replace invalid UTF-8 in names instead of throwing: metrics output must not fail a run.
  return out.dump(2, ' ', false, Json::error_handler_t::replace) + '\n';
}

std::string MetricsSnapshot::to_prometheus() const {
  PrometheusWriter w(pipeline);
  const auto integer = [](auto value) { return std::to_string(value); };

  w.family("micromodels_pipeline_elapsed_seconds", "gauge", "Seconds since the run started.");
  w.sample("micromodels_pipeline_elapsed_seconds", nullptr, prometheus_float(elapsed_s));
  w.family("micromodels_pipeline_packets_in_total", "counter",
           "Packets that entered this process's part of the pipeline.");
  w.sample("micromodels_pipeline_packets_in_total", nullptr, integer(packets_in));
  w.family("micromodels_pipeline_packets_out_total", "counter",
           "Packets its last stages are done with, once per packet.");
  w.sample("micromodels_pipeline_packets_out_total", nullptr, integer(packets_out));

  struct PerStage {
    const char* name;
    const char* type;
    const char* help;
    std::string (*value)(const StageMetrics&);
  };
  static constexpr PerStage kPerStage[] = {
      {"micromodels_stage_processed_total", "counter", "Packets whose process() returned.",
       [](const StageMetrics& s) { return std::to_string(s.processed); }},
      {"micromodels_stage_failed_total", "counter", "Packets whose process() threw.",
       [](const StageMetrics& s) { return std::to_string(s.failed); }},
      {"micromodels_stage_dropped_total", "counter",
       "Packets removed by a policy the pipeline chose: queue overflow, join timeout, and in live "
       "mode age, newest and unserved.",
       [](const StageMetrics& s) { return std::to_string(s.dropped); }},
      {"micromodels_stage_dropped_age_total", "counter",
       "Of the dropped packets, those older than the live budget when taken.",
       [](const StageMetrics& s) { return std::to_string(s.dropped_age); }},
      {"micromodels_stage_dropped_newest_total", "counter",
       "Of the dropped packets, those replaced by their stream's newer packet (live, newest).",
       [](const StageMetrics& s) { return std::to_string(s.dropped_newest); }},
      {"micromodels_stage_dropped_unserved_total", "counter",
       "Of the dropped packets, those not sent while no process served the stage (live, Redis).",
       [](const StageMetrics& s) { return std::to_string(s.dropped_unserved); }},
      {"micromodels_stage_dead_lettered_total", "counter",
       "Packets handed to the dead letter: failed ones, and on Redis entries that could not be "
       "delivered.",
       [](const StageMetrics& s) { return std::to_string(s.dead_lettered); }},
      {"micromodels_stage_emitted_total", "counter", "Packets passed downstream.",
       [](const StageMetrics& s) { return std::to_string(s.emitted); }},
      {"micromodels_stage_queue_depth", "gauge", "Packets waiting in the stage's queue.",
       [](const StageMetrics& s) { return std::to_string(s.queue_depth); }},
      {"micromodels_stage_queue_depth_max", "gauge", "Highest queue depth seen.",
       [](const StageMetrics& s) { return std::to_string(s.queue_max); }},
      {"micromodels_stage_queue_capacity", "gauge", "Capacity of the stage's queue.",
       [](const StageMetrics& s) { return std::to_string(s.queue_capacity); }},
      {"micromodels_stage_consumers", "gauge", "Consumers of the stage.",
       [](const StageMetrics& s) { return std::to_string(s.consumers); }},
      {"micromodels_stage_busy_ratio", "gauge",
       "Busy time over elapsed time times consumers (1 is saturated).",
       [](const StageMetrics& s) { return prometheus_float(s.busy_share); }},
  };
  for (const PerStage& metric : kPerStage) {
    w.family(metric.name, metric.type, metric.help);
    for (const StageMetrics& s : stages) w.sample(metric.name, &s, metric.value(s));
  }

  const bool any_events =
      std::any_of(stages.begin(), stages.end(), [](const StageMetrics& s) { return !s.events.empty(); });
  if (any_events) {
    w.family("micromodels_stage_events_total", "counter",
             "Events a stage counted besides packets (reconnects, retries), by event.");
  }
  for (const StageMetrics& s : stages) {
    for (const auto& [event, n] : s.events) {
      w.sample("micromodels_stage_events_total", &s, integer(n),
               "event=\"" + escape_label_value(event) + '"');
    }
  }

  if (!transport.empty()) {
    w.family("micromodels_transport_events_total", "counter",
             "What the transport met in this process, by event (Redis: memory_pauses, "
             "memory_paused_ms, reconnects, leases_lost).");
  }
  for (const auto& [event, n] : transport) {
    w.sample("micromodels_transport_events_total", nullptr, integer(n),
             "event=\"" + escape_label_value(event) + '"');
  }

  w.family("micromodels_stage_service_seconds", "histogram",
           "Time a stage spent processing one packet.");
  for (const StageMetrics& s : stages)
    w.histogram("micromodels_stage_service_seconds", s, s.service);
  w.family("micromodels_stage_queue_wait_seconds", "histogram",
           "Time a packet waited in the stage's queue.");
  for (const StageMetrics& s : stages) {
    w.histogram("micromodels_stage_queue_wait_seconds", s, s.queue_wait);
  }
  w.family("micromodels_stage_age_seconds", "histogram",
           "Age of a packet when a last stage is done with it: from its capture to now.");
  for (const StageMetrics& s : stages) {
    if (s.age.count > 0) w.histogram("micromodels_stage_age_seconds", s, s.age);
  }
  return w.str();
}

}  // namespace micromodels
