#include "text_table.hpp"

#include <algorithm>

namespace micromodels::detail {

namespace {

void pad(std::string& out, std::size_t columns) { out.append(columns, ' '); }

void append_cell(std::string& out, const std::string& text, std::size_t width, bool left) {
  const std::size_t used = display_width(text);
  const std::size_t fill = width > used ? width - used : 0;
  if (left) {
    out += text;
    pad(out, fill);
  } else {
    pad(out, fill);
    out += text;
  }
}

void append_line(std::string& out, std::string line) {
  // Trailing blanks from padding the last cell are noise in logs and diffs.
  while (!line.empty() && line.back() == ' ') line.pop_back();
  out += line;
  out += '\n';
}

}  // namespace

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0U) != 0x80U;
  }));
}

std::string render_table(const std::vector<TableColumn>& columns,
                         const std::vector<std::vector<std::string>>& rows) {
  constexpr std::size_t kGap = 2;
  std::vector<std::size_t> width(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = display_width(columns[c].header);
    for (const auto& row : rows) width[c] = std::max(width[c], display_width(row[c]));
  }

  struct Span {
    std::size_t first;
    std::size_t last;
  };
  std::vector<Span> groups;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (columns[c].group.empty()) continue;
    if (!groups.empty() && groups.back().last + 1 == c &&
        columns[groups.back().first].group == columns[c].group) {
      groups.back().last = c;
    } else {
      groups.push_back({c, c});
    }
  }
  auto span_width = [&](const Span& s) {
    std::size_t total = 0;
    for (std::size_t c = s.first; c <= s.last; ++c) total += width[c];
    return total + kGap * (s.last - s.first);
  };
  for (const Span& s : groups) {
    const std::size_t need = display_width(columns[s.first].group);
    const std::size_t have = span_width(s);
    if (need > have) width[s.last] += need - have;
  }

  std::string out;
  if (!groups.empty()) {
    std::string line;
    std::size_t column = 0;  // display column where the next group's span starts
    std::size_t c = 0;
    for (const Span& s : groups) {
      for (; c < s.first; ++c) column += width[c] + kGap;
      const std::string& label = columns[s.first].group;
      const std::size_t left = (span_width(s) - display_width(label)) / 2;
      pad(line, column + left - display_width(line));
      line += label;
      for (; c <= s.last; ++c) column += width[c] + kGap;
    }
    append_line(out, std::move(line));
  }
  auto append_row = [&](auto cell_of) {
    std::string line;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (c > 0) pad(line, kGap);
      append_cell(line, cell_of(c), width[c], columns[c].left);
    }
    append_line(out, std::move(line));
  };
  append_row([&](std::size_t c) { return columns[c].header; });
  for (const auto& row : rows) append_row([&](std::size_t c) { return row[c]; });
  return out;
}

}  // namespace micromodels::detail
