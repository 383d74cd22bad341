// Spelling help for error messages: "did you mean 'every'?" and name lists.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace micromodels::detail {

/// The candidate closest to `word` when it is close enough to be a likely typo, else nullopt.
[[nodiscard]] std::optional<std::string> closest_name(std::string_view word,
                                                      const std::vector<std::string>& candidates);

/// "; did you mean 'x'?" when a close candidate exists, else "".
[[nodiscard]] std::string did_you_mean(std::string_view word,
                                       const std::vector<std::string>& candidates);

/// "; did you mean 'x'? Valid <what>: a, b, c" or "; valid <what>: a, b, c", to follow
/// "unknown <thing> 'y'".
[[nodiscard]] std::string unknown_hint(std::string_view word, const std::vector<std::string>& valid,
                                       std::string_view what);

/// "a, b, c" (or "(none)" for an empty list).
[[nodiscard]] std::string join_names(const std::vector<std::string>& names);

/// `text` in double quotes with quotes, backslashes and control characters escaped, so that
/// surrounding whitespace and empty strings are visible in messages.
[[nodiscard]] std::string in_quotes(std::string_view text);

}  // namespace micromodels::detail
