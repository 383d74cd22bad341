// A /status document as a table of stages, for `micromodels ctl status` and `micromodels top`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace micromodels::cli {

struct StatusViewStyle {
  int width = 100;    // columns available; the busy bar takes what is left
  bool ansi = false;  // colours and bold (a terminal); plain text otherwise
};

/// The width for plain output (a pipe, a log): $COLUMNS when set, else 132.
[[nodiscard]] int plain_width();

/// A header line (pipeline, elapsed, packets, throughput), one row per stage (consumers, queue,
/// rate, service p50/p99, busy share as a bar) and a last line naming the bottleneck, whose row
/// is marked. Lines end with '\n'.
[[nodiscard]] std::string render_status(const nlohmann::json& status, const StatusViewStyle& style);

}  // namespace micromodels::cli
