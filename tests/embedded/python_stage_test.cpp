// Python stages in a program that embeds the interpreter, as the tool does: built in the
// sanitizer builds too, so that the Python stage's own code (the packet's view, images shared
// with numpy without a copy, the GIL around calls, failures, swap) runs under ASan and UBSan.
// The pytest tests (tests/python/) cover the same ground through the tool and the module.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "micromodels/micromodels.hpp"
#include "micromodels/python.hpp"

namespace fs = std::filesystem;
using namespace micromodels;

// LeakSanitizer reads these at start (ASan builds; elsewhere nothing calls it). The embedded
// interpreter is never finalized (as in the tool: stage instances may be destroyed on any thread
// until exit), and LeakSanitizer does not scan Python's own memory arenas, so what Python objects
// hold shows as leaked at exit. Suppressed: allocations made under the interpreter and by the
// libraries it loads (numpy, and OpenSSL through Python's hashlib); not ours.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libpython3\nleak:_multiarray_umath\nleak:libcrypto.so\n";
}

namespace {

// Stages whose every result is known from the packet's number.
constexpr const char* kStages = R"PY(
import numpy as np

class Paint:
    """An 8x6 image, every pixel value % 256."""
    reads = {"value": "int"}
    writes = {"image": "image"}

    def process(self, packet):
        packet["image"] = np.full((6, 8, 3), packet["value"] % 256, np.uint8)
        return packet

class Measure:
    """Reads the image in place (no copy), brightens its first row, measures both."""
    reads = {"image": "image", "value": "int"}
    writes = {"mean": "number", "corner": "int", "rows": "int"}

    def process(self, packet):
        image = packet["image"]
        if packet["value"] % 7 == 3:
            raise ValueError("seven's three")
        packet["mean"] = float(image.mean())
        packet["corner"] = int(image[5, 7, 2])
        packet["rows"] = int(image.shape[0])
        return packet

class Names:
    """The packet's fields and its repr, as a stage sees them."""
    reads = {"value": "int"}
    writes = {"names": "text", "shown": "text"}

    def process(self, packet):
        packet["names"] = ",".join(packet.fields())
        packet["shown"] = repr(packet)
        return packet

class Twice:
    """process_batch: each packet's value twice (process for a lone packet)."""
    reads = {"value": "int"}
    writes = {"twice": "int"}

    def process(self, packet):
        return self.process_batch([packet])[0]

    def process_batch(self, packets):
        for packet in packets:
            packet["twice"] = 2 * packet["value"]
        return packets
)PY";

class PythonStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const bool registered = [] {
      register_python_stages(Registry::global());
      return true;
    }();
    (void)registered;
    dir_ = fs::temp_directory_path() /
           ("micromodels_python_stage_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    // A module name of its own: the interpreter, like Python, keeps a module by its name.
    module_ = std::string("known_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::ofstream(dir_ / (module_ + ".py")) << kStages;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Pipeline load(const std::string& stages) const {
    return Pipeline::from_yaml_string("pipeline: embedded\nstages:\n" + stages, "embedded.yaml");
  }
  std::string python_stage(const std::string& name, const std::string& cls,
                           int consumers = 1, const std::string& extra = "") const {
    return "  - name: " + name + "\n    type: python\n    consumers: " +
           std::to_string(consumers) + "\n" + extra + "    params: { module: " + module_ + ", class: " + cls +
           ", path: " + dir_.string() + " }\n";
  }

  fs::path dir_;
  std::string module_;
};

TEST_F(PythonStageTest, ImagesMadeAndReadInPythonCarryTheirKnownValues) {
  Pipeline pipeline = load("  - { name: source, type: synthetic.source, params: { count: 300 } }\n" +
                           python_stage("paint", "Paint", 2) + python_stage("measure", "Measure", 2) +
                           "  - name: sink\n    type: sink.jsonl\n    ordered: true\n"
                           "    params: { path: " + (dir_ / "out.jsonl").string() + " }\n");
  pipeline.validate(Registry::global());
  Runner runner(pipeline);
  runner.start();
  runner.wait();
  const MetricsSnapshot m = runner.metrics();
  // Every 7th packet (value % 7 == 3) raised: failed, counted, and the rest arrived.
  const std::uint64_t raised = (300 + 3) / 7;
  EXPECT_EQ(m.stage("measure")->failed, raised);
  EXPECT_EQ(m.stage("sink")->processed, 300 - raised);

  std::ifstream lines(dir_ / "out.jsonl");
  std::string line;
  std::uint64_t read = 0;
  while (std::getline(lines, line)) {
    const auto value = nlohmann::json::parse(line)["fields"];
    const int v = value["value"].get<int>();
    EXPECT_NE(v % 7, 3);
    EXPECT_DOUBLE_EQ(value["mean"].get<double>(), v % 256) << line;
    EXPECT_EQ(value["corner"].get<int>(), v % 256) << line;
    EXPECT_EQ(value["rows"].get<int>(), 6) << line;
    ++read;
  }
  EXPECT_EQ(read, 300 - raised);
}

// In a worker, a packet carries fields of the transport's own (how an image travels, the image
// keys a hop retired: names that start with \x01). They are not the stage's: its packet's
// fields() and repr leave them out.
TEST_F(PythonStageTest, AStageSeesNoneOfTheTransportsOwnFields) {
  StageHarness names("python", {{"module", module_}, {"class", std::string("Names")},
                                {"path", dir_.string()}});
  Packet packet;
  packet.seq = 4;
  packet.set("value", std::int64_t{7});
  packet.set("\x01wire:frame", std::string("ref"));
  packet.set("\x01retired", Buffer{});
  const std::vector<Packet> out = names.process(std::move(packet));
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].get<std::string>("names"), "value");
  EXPECT_EQ(out[0].get<std::string>("shown"), "<Packet stream 0 seq 4: value, names>");
  EXPECT_TRUE(out[0].has("\x01retired")) << "the transport's fields stay in the packet";
}

TEST_F(PythonStageTest, ABatchStageAndASwapWhileRunningLoseNothing) {
  Pipeline pipeline = load(
      "  - { name: source, type: synthetic.source, params: { count: 2000, rate: 4000 } }\n" +
      python_stage("twice", "Twice", 2, "    batch: { max_batch: 8 }\n") +
      "  - { name: sink, type: pass }\n");
  pipeline.validate(Registry::global());
  Runner runner(pipeline);
  runner.start();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    runner.swap("twice", {}, "");  // re-imports the module; the run goes on
  }
  runner.wait();
  const MetricsSnapshot m = runner.metrics();
  EXPECT_EQ(m.packets_in, 2000u);
  EXPECT_EQ(m.packets_out, 2000u);
  EXPECT_EQ(m.stage("twice")->processed, 2000u);
  EXPECT_EQ(m.stage("twice")->failed, 0u);
}

}  // namespace
