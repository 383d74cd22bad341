// `micromodels bench NAME`: the benchmarks of bench/, in the tool that users already have.
#include <memory>

#include "bench/bench.hpp"
#include "commands.hpp"

namespace micromodels::cli {

Command add_bench_command(CLI::App& app) {
  auto options = std::make_shared<bench::BenchOptions>();
  auto name = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("bench", "Run a benchmark and print its figures");
  command->add_option("name", *name, "Benchmark to run")
      ->required()
      ->check(CLI::IsMember(bench::bench_names()));
  command->add_option("--json", options->json_path, "Also write the figures as JSON to this file");
  command->add_flag("--quick", options->quick,
                    "Fewer packets and trials: a smoke run for CI, not for figures");
  command->add_option("--frames", options->frames,
                      "eye_contact: frames per run (the 720p runs take at most their default); "
                      "live: frames per stream; redis: frames per eye-contact run");
  command->add_option("--broker", options->broker,
                      "redis: the Redis to measure on (default: start a redis-server on a free port)");
  command->add_flag("--no-netns", options->no_netns,
                    "scaleout: every process on loopback, without network namespaces");
  return {command, [options, name] { return bench::run_bench(*name, *options); }};
}

}  // namespace micromodels::cli
