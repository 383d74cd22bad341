// `micromodels types [TYPE...]`: the stage types a pipeline can use, and for one type its
// parameters and the fields it reads and writes.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "detail/suggest.hpp"
#include "exit_codes.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

namespace micromodels::cli {

namespace {

void print_type(const StageType& type) {
  std::cout << type.name << (type.is_source() ? "  (source)" : "") << '\n';
  if (!type.help.empty()) std::cout << "  " << type.help << '\n';
  // What an instance reads and writes can depend on its params: shown for the defaults.
  std::vector<std::string> required;
  for (const ParamSpec& spec : type.params) {
    if (!spec.default_value) required.push_back(spec.name);
  }
  if (required.empty() && type.info) {
    const StageInfo info = type.info(type.resolve(type.name, {}));
    std::cout << "  reads:  " << (info.reads_all ? "every field" : detail::join_names(info.reads))
              << '\n';
    if (!info.optional_reads.empty()) {
      std::cout << "  reads when present: " << detail::join_names(info.optional_reads) << '\n';
    }
    std::cout << "  writes: " << detail::join_names(info.writes) << '\n'
              << "  runs:   "
              << (info.blocking ? "on threads of its own (it blocks)" : "on the shared worker pool")
              << (info.batching ? "; batches (batch: max_batch)" : "") << '\n';
  } else if (!required.empty()) {
    std::cout << "  reads, writes: depend on the required params (" << detail::join_names(required) << ")\n";
  }
  if (type.params.empty()) {
    std::cout << "  params: none\n";
    return;
  }
  std::cout << "  params:\n";
  std::size_t width = 0;
  for (const ParamSpec& spec : type.params) width = std::max(width, spec.name.size());
  for (const ParamSpec& spec : type.params) {
    std::string fallback = "required";
    if (spec.default_value) {
      const std::string value = format_param(*spec.default_value);
      fallback = "default " + (value.empty() ? std::string("\"\"") : value);
    }
    // The values it takes: "default 1.0, at least 0"; a list's numbers each.
    if (const std::string range = spec.range.str(); !range.empty()) {
      fallback += ", " + range + (spec.type == ParamType::numbers ? " each" : "");
    }
    std::printf("    %-*s  %-7s  %s%s%s\n", static_cast<int>(width), spec.name.c_str(),
                std::string(param_type_name(spec.type)).c_str(), fallback.c_str(),
                spec.help.empty() ? "" : ": ", spec.help.c_str());
  }
  std::fflush(stdout);
}

}  // namespace

Command add_types_command(CLI::App& app) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto plugins = std::make_shared<std::vector<std::string>>();
  CLI::App* command = app.add_subcommand(
      "types", "List the stage types a pipeline can use, or describe some: params, reads, writes");
  command->add_option("type", *names, "Stage types to describe (default: list them all)");
  add_plugin_option(*command, *plugins);
  return {command, [names, plugins] {
            load_plugins(*plugins);
            const Registry& registry = Registry::global();
            if (names->empty()) {
              std::size_t width = 0;
              for (const std::string& name : registry.names()) width = std::max(width, name.size());
              for (const std::string& name : registry.names()) {
                // The first sentence: `micromodels types NAME` has the rest.
                const std::string& help = registry.find(name)->help;
                const std::string first = help.substr(0, help.find(". ") + 1);
                std::printf("%-*s  %s\n", static_cast<int>(width), name.c_str(),
                            (help.find(". ") == std::string::npos ? help : first).c_str());
              }
              std::fflush(stdout);
              return kExitOk;
            }
            for (const std::string& name : *names) {
              if (registry.find(name) == nullptr) {
                throw ConfigError({}, "type",
                                  "unknown stage type '" + name + "'" +
                                      detail::unknown_hint(name, registry.names(), "types"));
              }
            }
            for (std::size_t i = 0; i < names->size(); ++i) {
              if (i > 0) std::cout << '\n';
              print_type(*registry.find((*names)[i]));
            }
            return kExitOk;
          }};
}

}  // namespace micromodels::cli
