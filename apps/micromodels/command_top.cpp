// `micromodels top URL`: a live view of a running pipeline, like htop, from its control endpoint.
#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "commands.hpp"
#include "control_client.hpp"
#include "exit_codes.hpp"
#include "status_view.hpp"
#include "terminal.hpp"

namespace micromodels::cli {

namespace {

struct TopOptions {
  std::string url;
  std::string token;
  double interval_s = 0.5;
  bool once = false;
};

int refused(const ControlReply& reply) {
  std::cerr << "error: " << reply.error_message() << " (HTTP " << reply.status << ")\n";
  return reply.status >= 400 && reply.status < 500 ? kExitConfigError : kExitFailure;
}

// One snapshot, plain text: for a pipe, a log, a test, or --once.
int print_once(const ControlClient& client) {
  const ControlReply reply = client.get("/status");
  if (!reply.ok()) return refused(reply);
  std::cout << render_status(nlohmann::json::parse(reply.body),
                             {.width = plain_width(), .ansi = false});
  return kExitOk;
}

int live(const ControlClient& client, const TopOptions& options) {
  // The first request outside the full screen: a wrong URL or token is reported plainly.
  ControlReply reply = client.get("/status");
  if (!reply.ok()) return refused(reply);
  const auto interval = std::chrono::milliseconds(static_cast<int>(options.interval_s * 1000));
  std::string ended;
  {
    Terminal terminal;
    auto next_poll = std::chrono::steady_clock::now();
    while (!terminal.interrupted()) {
      if (std::chrono::steady_clock::now() >= next_poll) {
        try {
          reply = client.get("/status");
        } catch (const Unreachable&) {
          ended = "the run at " + client.url() + " has ended (its control endpoint closed)";
          break;
        }
        next_poll = std::chrono::steady_clock::now() + interval;
      }
      const StatusViewStyle style{.width = terminal.columns(), .ansi = true};
      std::string screen = reply.ok() ? render_status(nlohmann::json::parse(reply.body), style)
                                      : "error: " + reply.error_message() + "\n";
      screen +=
          "\n" + client.url() + "  every " + std::to_string(interval.count()) + " ms   q: quit\n";
      terminal.draw(screen);
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_poll - std::chrono::steady_clock::now());
      const auto key = terminal.wait_key(std::max(left, std::chrono::milliseconds(0)));
      if (key && (*key == 'q' || *key == 'Q')) break;
    }
  }
  // After the terminal is restored, so that the message stays on the main screen.
  if (!ended.empty()) std::cerr << ended << '\n';
  return kExitOk;
}

}  // namespace

Command add_top_command(CLI::App& app) {
  auto options = std::make_shared<TopOptions>();
  CLI::App* command =
      app.add_subcommand("top", "Live view of a running pipeline's stages (run --listen)");
  command->add_option("url", options->url, "The endpoint, as `run` printed it: http://HOST:PORT")
      ->required();
  command->add_option("--token", options->token, "Token of the endpoint (run --token)")
      ->envname("MICROMODELS_TOKEN");
  command->add_option("--interval", options->interval_s, "Seconds between updates")
      ->check(between(0.1, 60));
  command->add_flag("--once", options->once,
                    "Print one snapshot and exit (what happens when stdout is not a terminal)");
  return {command, [options] {
            std::unique_ptr<ControlClient> client;
            try {
              client = std::make_unique<ControlClient>(options->url, options->token);
            } catch (const std::invalid_argument& e) {
              std::cerr << "error: " << e.what() << '\n';
              return kExitConfigError;
            }
            try {
              const bool terminal = ::isatty(STDOUT_FILENO) != 0 && ::isatty(STDIN_FILENO) != 0;
              return options->once || !terminal ? print_once(*client) : live(*client, *options);
            } catch (const Unreachable& e) {
              std::cerr << "error: " << e.what() << '\n';
              return kExitUnreachable;
            }
          }};
}

}  // namespace micromodels::cli
