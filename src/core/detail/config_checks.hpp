// Checks and error wording shared by the YAML reader and Pipeline::validate, so that a mistake
// reads the same whether it is caught while parsing a file or later, in a pipeline built in C++.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "micromodels/pipeline.hpp"

namespace micromodels::detail {

inline constexpr std::int64_t kMaxConsumers = 1024;
inline constexpr std::int64_t kMaxWorkers = 1024;
inline constexpr std::int64_t kMaxImageTtlS = 7 * 24 * 3600;  // wire.image_ttl_s: a week
inline constexpr std::int64_t kMaxQueueCapacity = std::int64_t{1} << 20;
inline constexpr std::int64_t kMaxBatch = 4096;
inline constexpr std::int64_t kMaxTraceEvery = 1'000'000'000;
inline constexpr double kMaxAgeMs = 3'600'000;  // live.max_age_ms: an hour

/// A number as people write it: "-1", "2.5" (format_param would say "-1.0").
[[nodiscard]] std::string plain_number(double value);

/// "stage 'track'", or "stage #3" (1-based) for a stage that has no name yet.
[[nodiscard]] std::string stage_label(std::string_view name, std::size_t index);

/// Throws ConfigError with what() "where: subject: key 'key': message"; an empty subject
/// (pipeline-level keys) or key is left out.
[[noreturn]] void fail(const SourceLocation& where, std::string_view subject, std::string_view key,
                       const std::string& message);

/// Stage names are [a-z0-9_]+: they become queue names, metric labels and Redis stream keys.
void check_stage_name(std::string_view name, const SourceLocation& where, std::size_t index);
/// `memory` or `redis://host[:port]`.
void check_broker(std::string_view broker, const SourceLocation& where);
/// How images travel on Redis (`wire.images`): raw, png or jpeg.
void check_wire_images(std::string_view images, const SourceLocation& where);
/// An integer in [min, max].
void check_count(std::int64_t value, std::int64_t min, std::int64_t max,
                 const SourceLocation& where, std::string_view subject, std::string_view key);
/// A size in megabytes: finite and more than 0.
void check_megabytes(double value, const SourceLocation& where, std::string_view key);
/// `live.max_age_ms`: milliseconds from 0 (no age limit) to kMaxAgeMs.
void check_max_age(double value, const SourceLocation& where, std::string_view subject,
                   std::string_view key);
/// A finite number >= 0, or > 0 when `positive`.
void check_duration(double value, bool positive, const SourceLocation& where,
                    std::string_view subject, std::string_view key);

}  // namespace micromodels::detail
