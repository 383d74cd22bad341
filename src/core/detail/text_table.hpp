// The one text table: the metrics table and `micromodels status` are laid out by it, so that
// they pad and align alike. (A distributed run's bytes per hop keep their fixed columns, which
// scripts read.)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace micromodels::detail {

/// Terminal columns taken by UTF-8 text ("µs" is three bytes, one column): count the bytes that
/// start a code point. Stage names and units are not wide characters, so this is enough.
[[nodiscard]] std::size_t display_width(std::string_view text);

struct TableColumn {
  std::string group;  // label over a run of adjacent columns with the same group ("" for none)
  std::string header;
  bool left = false;  // text left-aligned, numbers right-aligned
};

/// Lays out rows under a one- or two-line header; group labels are centred over their columns,
/// and a group label wider than its columns widens the last of them.
[[nodiscard]] std::string render_table(const std::vector<TableColumn>& columns,
                                       const std::vector<std::vector<std::string>>& rows);

}  // namespace micromodels::detail
