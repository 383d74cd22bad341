// Plugins loaded by the `micromodels` tool (tests/plugins/): their stage types in runs, `types`
// and `inspect`, from --plugin and from `plugins:`, and each way a plugin can be wrong.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tool_process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Result = micromodels::testing::ToolResult;
using micromodels::testing::read_text;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

fs::path plugin(const std::string& name) {
  return fs::path(MICROMODELS_PLUGIN_DIR) / ("lib" + name + ".so");
}

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = micromodels::testing::fresh_test_dir("micromodels_plugin"); }
  void TearDown() override {
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  Result run(std::vector<std::string> args) {
    return micromodels::testing::ToolProcess(dir_, "cli", std::move(args)).wait(60s);
  }

  // source (12 packets) -> label (example.label, 2 consumers) -> sink (ordered, dir/out.jsonl),
  // `header` lines (e.g. plugins:) after the name.
  fs::path write_pipeline(const std::string& header = "") {
    const fs::path path = dir_ / "labels.yaml";
    write_text(path, "pipeline: labels\n" + header +
                         "stages:\n"
                         "  - name: source\n"
                         "    type: synthetic.source\n"
                         "    params: { count: 12 }\n"
                         "  - name: label\n"
                         "    type: example.label\n"
                         "    consumers: 2\n"
                         "  - name: sink\n"
                         "    type: sink.jsonl\n"
                         "    ordered: true\n"
                         "    params: { path: " +
                         (dir_ / "out.jsonl").string() + " }\n");
    return path;
  }

  // The labels the sink wrote, in file order.
  std::vector<std::string> labels() const {
    std::vector<std::string> out;
    std::ifstream in(dir_ / "out.jsonl");
    for (std::string line; std::getline(in, line);) {
      out.push_back(nlohmann::json::parse(line).at("fields").at("label").get<std::string>());
    }
    return out;
  }

  static std::vector<std::string> expected_labels(const std::string& prefix) {
    std::vector<std::string> out;
    for (int seq = 0; seq < 12; ++seq) out.push_back(prefix + std::to_string(seq));
    return out;
  }

  fs::path dir_;
};

TEST_F(PluginTest, WithoutThePluginItsTypeIsUnknown) {
  const Result r = run({"inspect", write_pipeline().string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown stage type 'example.label'"), std::string::npos) << r.err;
  // No built-in type is close to its name: the message says how a plugin's type is loaded.
  EXPECT_NE(r.err.find("'example.label'; a stage type from a plugin needs the plugin loaded "
                       "(plugins: [PATH] in the pipeline file, or --plugin PATH); valid types: "),
            std::string::npos)
      << r.err;
}

TEST_F(PluginTest, RunLoadsThePluginGivenOnTheCommandLine) {
  const fs::path metrics = dir_ / "metrics.json";
  const Result r = run({"run", write_pipeline().string(), "--plugin",
                        plugin("example_label").string(), "--set", "label.prefix=x-", "--consumers",
                        "label=3", "--quiet", "--metrics-json", metrics.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(labels(), expected_labels("x-"));
  const nlohmann::json m = nlohmann::json::parse(read_text(metrics));
  bool found = false;
  for (const auto& stage : m.at("stages")) {
    if (stage.at("name") != "label") continue;
    found = true;
    EXPECT_EQ(stage.at("type"), "example.label");
    EXPECT_EQ(stage.at("processed"), 12);
    EXPECT_EQ(stage.at("failed"), 0);
    EXPECT_EQ(stage.at("consumers"), 3);
  }
  EXPECT_TRUE(found) << m.dump();
}

TEST_F(PluginTest, PluginsKeyLoadsPathsRelativeToThePipelineFile) {
  // The library beside the pipeline, not where the tool runs: only the file's folder finds it.
  fs::create_directories(dir_ / "lib");
  fs::copy_file(plugin("example_label"), dir_ / "lib" / "libexample_label.so");
  const fs::path file = write_pipeline("plugins: [lib/libexample_label.so]\n");
  ASSERT_FALSE(fs::exists(fs::current_path() / "lib" / "libexample_label.so"));
  const Result r = run({"run", file.string(), "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(labels(), expected_labels("packet-"));

  // The same file on the command line too: loaded once, not a duplicate type.
  const Result both = run({"run", file.string(), "--quiet", "--plugin",
                           (dir_ / "lib" / "libexample_label.so").string()});
  EXPECT_EQ(both.exit_code, 0) << both.err;
}

TEST_F(PluginTest, TypesAndInspectShowThePluginTypes) {
  const std::string so = plugin("example_label").string();
  const Result list = run({"types", "--plugin", so});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("example.label"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("synthetic.source"), std::string::npos) << list.out;

  const Result one = run({"types", "example.label", "--plugin", so});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.out.find("writes: label"), std::string::npos) << one.out;
  EXPECT_TRUE(std::regex_search(one.out, std::regex(R"(prefix\s+text\s+default packet-)")))
      << one.out;

  const Result inspect = run({"inspect", write_pipeline().string(), "--plugin", so});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("example.label"), std::string::npos) << inspect.out;
}

TEST_F(PluginTest, BadPluginsExitWithTwoNamingTheFile) {
  const std::string pipeline = write_pipeline().string();
  struct Case {
    fs::path so;
    std::vector<std::string> expected;
  };
  const fs::path not_a_library = dir_ / "libtext.so";
  write_text(not_a_library, "not a shared library\n");
  const std::vector<Case> cases = {
      {dir_ / "libmissing.so", {"no such file", "build the plugin first"}},
      {not_a_library, {"cannot load it: ", "libtext.so"}},
      {plugin("plugin_no_register"), {"not a micromodels plugin", "micromodels_register()"}},
      {plugin("plugin_wrong_abi"), {"built for plugin ABI 5", "has ABI 4", "rebuild the plugin"}},
      {plugin("plugin_duplicate_type"), {"'pass', which already exists"}},
  };
  for (const Case& c : cases) {
    for (const char* command : {"run", "inspect"}) {
      const Result r = run({command, pipeline, "--plugin", c.so.string()});
      EXPECT_EQ(r.exit_code, 2) << command << ' ' << c.so << ": " << r.err;
      EXPECT_EQ(r.err.rfind("error: " + c.so.string() + ": ", 0), 0U) << r.err;
      for (const std::string& text : c.expected) {
        EXPECT_NE(r.err.find(text), std::string::npos) << c.so << ": " << r.err;
      }
    }
  }
  // A refused plugin adds none of its types, not even those registered before the bad one.
  const Result types = run({"types", "plugin.fresh", "--plugin", plugin("plugin_duplicate_type")});
  EXPECT_EQ(types.exit_code, 2);
  EXPECT_NE(types.err.find("already exists"), std::string::npos) << types.err;
}

TEST_F(PluginTest, BadPluginsKeyNamesTheLineOfThePipelineFile) {
  const Result missing = run({"run", write_pipeline("plugins:\n  - libmissing.so\n").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(std::regex_search(
      missing.err, std::regex(R"(labels\.yaml:3:5: plugin '.*libmissing\.so': no such file)")))
      << missing.err;

  const Result abi = run(
      {"run", write_pipeline("plugins: [" + plugin("plugin_wrong_abi").string() + "]\n").string()});
  EXPECT_EQ(abi.exit_code, 2);
  EXPECT_TRUE(
      std::regex_search(abi.err, std::regex(R"(labels\.yaml:2:\d+: .*built for plugin ABI 5)")))
      << abi.err;

  const Result not_a_list = run({"run", write_pipeline("plugins: libx.so\n").string()});
  EXPECT_EQ(not_a_list.exit_code, 2);
  EXPECT_TRUE(
      std::regex_search(not_a_list.err, std::regex(R"(labels\.yaml:2:1: .*must be a list)")))
      << not_a_list.err;
}

}  // namespace
