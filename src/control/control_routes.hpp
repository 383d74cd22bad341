// The control endpoint's routes as plain functions of (method, path, body): no sockets here.
#pragma once

#include <string>

#include "micromodels/control/control_server.hpp"

#include "status_sampler.hpp"

namespace micromodels::detail {

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // the Allow header of a 405
};

/// A JSON error reply: {"error": message, "status": status}, and the keys of `more` (what a
/// client such as the dashboard can act on).
[[nodiscard]] Reply error_reply(int status, const std::string& message,
                                const nlohmann::ordered_json& more = nlohmann::ordered_json::object());

/// Answers GET / (the dashboard's files), GET /metrics, GET /status, POST /stages/NAME/scale and POST /stages/NAME/swap.
/// Every request is checked completely before the run is asked, so a refused request
/// changes nothing; errors are JSON with a message for the operator.
class ControlRoutes {
 public:
  ControlRoutes(Run& run, StatusSampler& sampler) : run_(run), sampler_(sampler) {}

  [[nodiscard]] Reply handle(const std::string& method, const std::string& path,
                             const std::string& body) const;

 private:
  [[nodiscard]] Reply scale(const std::string& stage, const std::string& body) const;
  [[nodiscard]] Reply swap(const std::string& stage, const std::string& body) const;

  Run& run_;
  StatusSampler& sampler_;
};

}  // namespace micromodels::detail
