#include "control_routes.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>

#include "micromodels/pipeline.hpp"

#include "dashboard.hpp"

namespace micromodels::detail {

namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kRoutes =
    "GET / (the dashboard), GET /metrics, GET /status, GET /status/stream, GET /preview/FIELD, "
    "POST /stages/NAME/scale, POST /stages/NAME/swap";

Reply json_reply(int status, const Json& body) {
  return {.status = status,
          .content_type = "application/json",
          .body = body.dump(2) + "\n",
          .allow = {}};
}

Reply method_not_allowed(const std::string& method, const std::string& path,
                         const std::string& allowed) {
  Reply reply =
      error_reply(405, "method " + method + " is not allowed on " + path + "; use " + allowed);
  reply.allow = allowed;
  return reply;
}

// The body of a POST as a JSON object, or the reply that says what is wrong with it.
std::optional<Reply> parse_object(const std::string& body, const std::string& example,
                                  Json& object) {
  if (body.empty()) return error_reply(400, "empty request body; expected JSON like " + example);
  try {
    object = Json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message names the byte offset and what it expected there.
    return error_reply(
        400, std::string("malformed JSON: ") + e.what() + "; expected JSON like " + example);
  }
  if (!object.is_object()) {
    return error_reply(
        400, "expected a JSON object like " + example + ", got " + std::string(object.type_name()));
  }
  return std::nullopt;
}

std::optional<Reply> unknown_keys(const Json& object, std::initializer_list<const char*> known,
                                  const std::string& example) {
  for (const auto& [key, value] : object.items()) {
    bool found = false;
    for (const char* k : known) found = found || key == k;
    if (!found) return error_reply(400, "unknown key '" + key + "'; expected JSON like " + example);
  }
  return std::nullopt;
}

// A stage that is not in the metrics does not run in this process: 404 before the run is asked.
bool has_stage(const Run& run, const std::string& name) {
  return run.metrics().stage(name) != nullptr;
}

// Asks the run; a refusal becomes its error reply: std::invalid_argument 400, ConfigError 422,
// anything else 500.
std::optional<Reply> ask_run(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return error_reply(400, e.what());
  } catch (const ConfigError& e) {
    return error_reply(422, e.what());
  } catch (const std::exception& e) {
    return error_reply(500, e.what());
  }
  return std::nullopt;
}

}  // namespace

Reply error_reply(int status, const std::string& message, const Json& more) {
  Json body{{"error", message}, {"status", status}};
  body.update(more);
  return json_reply(status, body);
}

Reply ControlRoutes::handle(const std::string& method, const std::string& path,
                            const std::string& body) const {
  if (const EmbeddedFile* file = dashboard_file(path)) {
    if (method != "GET" && method != "HEAD") return method_not_allowed(method, path, "GET");
    return {.status = 200,
            .content_type = std::string(content_type_of(file->path)),
            .body = std::string(file->body),
            .allow = {}};
  }
  if (path == "/metrics") {
    if (method != "GET" && method != "HEAD") return method_not_allowed(method, path, "GET");
    return {.status = 200,
            .content_type = "text/plain; version=0.0.4; charset=utf-8",
            .body = run_.metrics().to_prometheus(),
            .allow = {}};
  }
  // GET streams (preview.cpp, status_stream.cpp); other methods reach here.
  if (path == "/preview" || path.starts_with("/preview/") || path == "/status/stream") {
    return method_not_allowed(method, path, "GET");
  }
  if (path == "/status") {
    if (method != "GET" && method != "HEAD") return method_not_allowed(method, path, "GET");
    return json_reply(200, sampler_.status());
  }
  constexpr std::string_view kStages = "/stages/";
  if (path.starts_with(kStages)) {
    const std::string rest = path.substr(kStages.size());
    const auto slash = rest.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      const std::string stage = rest.substr(0, slash);
      const std::string action = rest.substr(slash + 1);
      if (action == "scale" || action == "swap") {
        if (method != "POST") return method_not_allowed(method, path, "POST");
        if (stage.find('/') != std::string::npos || !has_stage(run_, stage)) {
          return error_reply(404, "no stage '" + stage + "' runs in this process");
        }
        return action == "scale" ? scale(stage, body) : swap(stage, body);
      }
    }
  }
  return error_reply(404, "no route " + method + " " + path + "; the routes are " + kRoutes);
}

Reply ControlRoutes::scale(const std::string& stage, const std::string& body) const {
  const std::string example = R"({"consumers": 4})";
  Json request;
  if (auto error = parse_object(body, example, request)) return *error;
  if (auto error = unknown_keys(request, {"consumers"}, example)) return *error;
  if (!request.contains("consumers")) {
    return error_reply(400, "missing key 'consumers'; expected JSON like " + example);
  }
  const Json& value = request["consumers"];
  if (!value.is_number_integer()) {
    return error_reply(400, "'consumers' must be a whole number, got " + value.dump());
  }
  // Counts beyond int are refused here; the run decides the real upper limit.
  constexpr auto kIntMax = static_cast<std::int64_t>(std::numeric_limits<int>::max());
  const bool in_range =
      value.is_number_unsigned()
          ? value.get<std::uint64_t>() >= 1 &&
                value.get<std::uint64_t>() <= static_cast<std::uint64_t>(kIntMax)
          : value.get<std::int64_t>() >= 1 && value.get<std::int64_t>() <= kIntMax;
  if (!in_range) {
    return error_reply(400,
                       "'consumers' must be a whole number of at least 1, got " + value.dump());
  }
  const int consumers = value.get<int>();
  const Json before = sampler_.stage_status(stage);
  if (auto error = ask_run([&] { run_.scale(stage, consumers); })) return *error;
  return json_reply(200,
                    Json{{"stage", stage},
                         {"consumers_before", before.is_object() ? before["consumers"] : Json()},
                         {"consumers", consumers},
                         {"status", sampler_.stage_status(stage)}});
}

Reply ControlRoutes::swap(const std::string& stage, const std::string& body) const {
  const std::string example = R"({"params": {"service_ms": 2}, "type": "model.spin"})";
  Json request;
  if (auto error = parse_object(body, example, request)) return *error;
  if (auto error = unknown_keys(request, {"params", "type"}, example)) return *error;
  std::string type;
  if (request.contains("type")) {
    const Json& value = request["type"];
    if (!value.is_string() || value.get<std::string>().empty()) {
      return error_reply(400, "'type' must be a non-empty stage type name, got " + value.dump());
    }
    type = value.get<std::string>();
  }
  // Values as text, as `--set` takes them: strings as they are, numbers, booleans and lists of
  // them in JSON notation, which the parameter parser reads as it reads YAML.
  std::map<std::string, std::string> params;
  if (request.contains("params")) {
    const Json& object = request["params"];
    if (!object.is_object()) {
      return error_reply(400, "'params' must be an object of name: value, got " + object.dump());
    }
    for (const auto& [name, value] : object.items()) {
      if (value.is_string()) {
        params[name] = value.get<std::string>();
      } else if (value.is_number() || value.is_boolean()) {
        params[name] = value.dump();
      } else if (value.is_array() && std::all_of(value.begin(), value.end(), [](const Json& v) {
                   return v.is_number() || v.is_boolean() || v.is_string();
                 })) {
        params[name] = value.dump();
      } else {
        return error_reply(400, "param '" + name +
                                    "' must be a string, number, boolean or list of them, got " +
                                    value.dump());
      }
    }
  }
  const Json before = sampler_.stage_status(stage);
  if (auto error = ask_run([&] { run_.swap(stage, params, type); })) return *error;
  Json applied = Json::object();
  for (const auto& [name, text] : params) applied[name] = text;
  return json_reply(200, Json{{"stage", stage},
                              {"type_before", before.is_object() ? before["type"] : Json()},
                              {"params", applied},
                              {"status", sampler_.stage_status(stage)}});
}

}  // namespace micromodels::detail
