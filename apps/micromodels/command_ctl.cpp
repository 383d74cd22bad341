// `micromodels ctl URL scale|swap|status`: change or look at a running pipeline through its
// control endpoint (`micromodels run --listen`).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "control_client.hpp"
#include "exit_codes.hpp"
#include "status_view.hpp"

namespace micromodels::cli {

namespace {

struct CtlOptions {
  std::string url;
  std::string token;
  std::string stage;
  int consumers = 0;
  std::string type;
  std::vector<std::string> params;  // "name=value"
  bool json = false;
};

// A refused request changed nothing: the server's message, and the exit code of a wrong input.
int refused(const ControlReply& reply) {
  std::cerr << "error: " << reply.error_message() << " (HTTP " << reply.status << ")\n";
  return reply.status >= 400 && reply.status < 500 ? kExitConfigError : kExitFailure;
}

int scale(const CtlOptions& options, const ControlClient& client) {
  const ControlReply reply =
      client.post("/stages/" + options.stage + "/scale", {{"consumers", options.consumers}});
  if (!reply.ok()) return refused(reply);
  const auto answer = nlohmann::json::parse(reply.body);
  std::cout << "scaled " << options.stage << ": " << answer.value("consumers_before", 0) << " -> "
            << answer.value("consumers", 0) << " consumers\n";
  return kExitOk;
}

int swap(const CtlOptions& options, const ControlClient& client) {
  nlohmann::json params = nlohmann::json::object();
  for (const std::string& assignment : options.params) {
    const auto equals = assignment.find('=');
    params[assignment.substr(0, equals)] = assignment.substr(equals + 1);
  }
  nlohmann::json request = {{"params", params}};
  if (!options.type.empty()) request["type"] = options.type;
  const ControlReply reply = client.post("/stages/" + options.stage + "/swap", request);
  if (!reply.ok()) return refused(reply);
  const auto answer = nlohmann::json::parse(reply.body);
  const std::string before = answer.value("type_before", std::string());
  const std::string after = answer["status"].value("type", std::string());
  std::cout << "swapped " << options.stage << ": " << before;
  if (after != before) std::cout << " -> " << after;
  for (const auto& [name, value] : answer["params"].items()) {
    std::cout << ' ' << name << '=' << value.get<std::string>();
  }
  std::cout << '\n';
  return kExitOk;
}

int status(const CtlOptions& options, const ControlClient& client) {
  const ControlReply reply = client.get("/status");
  if (!reply.ok()) return refused(reply);
  if (options.json) {
    std::cout << reply.body;  // as the endpoint wrote it: its key order, its numbers
  } else {
    std::cout << render_status(nlohmann::json::parse(reply.body),
                               {.width = plain_width(), .ansi = false});
  }
  return kExitOk;
}

CLI::Validator param_validator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto equals = text.find('=');
        return equals == std::string::npos || equals == 0
                   ? "expected param=value, got '" + text + "'"
                   : std::string();
      },
      "PARAM=VALUE");
}

}  // namespace

Command add_ctl_command(CLI::App& app) {
  auto options = std::make_shared<CtlOptions>();
  CLI::App* command = app.add_subcommand(
      "ctl", "Change or show a running pipeline through its control endpoint (run --listen)");
  command->add_option("url", options->url, "The endpoint, as `run` printed it: http://HOST:PORT")
      ->required();
  command->add_option("--token", options->token, "Token of the endpoint (run --token)")
      ->envname("MICROMODELS_TOKEN");
  command->require_subcommand(1);

  CLI::App* scale_command = command->add_subcommand("scale", "Set a stage's consumer count");
  scale_command->add_option("stage", options->stage, "Stage name")->required();
  scale_command->add_option("consumers", options->consumers, "New consumer count")->required();

  CLI::App* swap_command = command->add_subcommand(
      "swap", "Replace a stage's instance with new parameters or type, while it runs");
  swap_command->add_option("stage", options->stage, "Stage name")->required();
  swap_command->add_option("--type", options->type, "New stage type (default: the same)");
  swap_command->add_option("params", options->params, "Parameters to change: PARAM=VALUE ...")
      ->check(param_validator());

  CLI::App* status_command = command->add_subcommand("status", "Show every stage, as `top` does");
  status_command->add_flag("--json", options->json, "Print the endpoint's JSON as it is");

  for (CLI::App* sub : {scale_command, swap_command, status_command}) sub->fallthrough();

  return {command, [options, scale_command, swap_command] {
            std::unique_ptr<ControlClient> made;
            try {
              made = std::make_unique<ControlClient>(options->url, options->token);
            } catch (const std::invalid_argument& e) {
              std::cerr << "error: " << e.what() << '\n';
              return kExitConfigError;
            }
            const ControlClient& client = *made;
            try {
              if (scale_command->parsed()) return scale(*options, client);
              if (swap_command->parsed()) return swap(*options, client);
              return status(*options, client);
            } catch (const Unreachable& e) {
              std::cerr << "error: " << e.what() << '\n';
              return kExitUnreachable;
            }
          }};
}

}  // namespace micromodels::cli
