// The client side of the control endpoint, shared by `micromodels ctl` and `micromodels top`.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace micromodels::cli {

/// No control endpoint answered at the URL: nothing listens there (the run ended, or a wrong
/// port), or it timed out. The message names the URL and what to check.
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An answer of the endpoint: status and body (JSON for everything but /metrics).
struct ControlReply {
  int status = 0;
  std::string body;

  [[nodiscard]] bool ok() const { return status >= 200 && status < 300; }
  /// The "error" text of a JSON error reply, or the body itself.
  [[nodiscard]] std::string error_message() const;
};

/// Requests to the control endpoint of a `micromodels run --listen`, with the token when given.
///
///   ControlClient client("http://127.0.0.1:41234", token);
///   ControlReply reply = client.post("/stages/work/scale", {{"consumers", 4}});
class ControlClient {
 public:
  /// `url`: "http://HOST:PORT" (the line `control: ...` that `run` prints) or "HOST:PORT".
  /// Throws std::invalid_argument when it is not of that form.
  ControlClient(std::string url, std::string token);

  /// Throw Unreachable when no endpoint answers.
  [[nodiscard]] ControlReply get(const std::string& path) const;
  [[nodiscard]] ControlReply post(const std::string& path, const nlohmann::json& body) const;

  [[nodiscard]] const std::string& url() const { return url_; }

 private:
  std::string url_;
  std::string token_;
};

}  // namespace micromodels::cli
