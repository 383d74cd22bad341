// `micromodels bench eye_contact`: the eye-contact pipeline as micro-models
// (pipelines/eye_contact.yaml) against the same models called in sequence on every frame
// (pipelines/eye_contact_monolith.yaml), on the fetched sample video at 360x288 and 720p.
//
// Measured per run, from start() to wait() (model loading excluded): wall time, this process's
// CPU time (getrusage, all threads), frames in and out, and per stage its busy (wall) time per
// frame from the metrics and the CPU time of the threads that called it (each stage type is
// wrapped in a timing twin: on a shared machine a preempted thread stays "busy", but does not
// use CPU). A short single-thread calibration of the iris model, alone and batched, completes
// the account of where the speed-up comes from:
//
//   speedup = work ratio (monolith CPU per frame / micro CPU per frame)
//           x parallelism ratio (cores the micro run kept busy / cores the monolith kept busy)
//
// which holds exactly when both runs process the same frames; the work ratio is split into
// fewer detections, batching and the rest. About 800 lines: the runs, the timing twins, the
// calibration and the report all feed that one account, and are kept together with it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "micromodels/micromodels.hpp"

#include "bench.hpp"
#include "json_file.hpp"
#include "eye_contact_support.hpp"

namespace micromodels::bench {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kQuickFrames = 300;
constexpr std::uint64_t kFrames720p = 600;  // 4800 frames at 720p would take the monolith minutes
// Every run's videos are encoded as MPEG-4 Part 2, cheap to encode, so that the figures are the
// pipelines' work and not the encoder's: H.264 (video.sink's default, what the demo writes so
// that browsers play it) costs more CPU per frame, even at x264's superfast preset.
constexpr const char* kBenchCodec = "mp4v";
constexpr std::uint64_t kQuickFrames720p = 100;
constexpr int kCalibrationFrames = 48;
constexpr const char* kCountType = "bench.eye_contact_count";
constexpr const char* kCountStage = "bench_count";

// Targets of the eye-contact application on the 2-core development machine.
constexpr double kSpeedupTarget = 2.5;
constexpr double kUtilisationTarget = 0.9;
constexpr double kFpsTarget = 150;
constexpr double kFps720pTarget = 45;

/// What a counting stage appended after the last processing stage sees: frames with a face,
/// frames that got a patch, and the tracker's own re-detections (a running count per stream).
struct Counts {
  std::mutex mutex;
  std::uint64_t frames = 0;
  std::uint64_t with_face = 0;
  std::uint64_t corrected = 0;
  std::uint64_t iris_runs = 0;  // frames eye.iris ran its model on (iris_measured = 1)
  std::map<std::uint32_t, std::int64_t> redetections;
};

class CountStage final : public Stage {
 public:
  explicit CountStage(std::shared_ptr<Counts> counts) : counts_(std::move(counts)) {}
  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    std::lock_guard lock(counts_->mutex);
    ++counts_->frames;
    if (packet.has("landmarks")) ++counts_->with_face;
    if (packet.has("generated")) ++counts_->corrected;
    if (const Value* value = packet.find("iris_measured")) {
      if (const auto* n = std::get_if<std::int64_t>(value); n != nullptr && *n == 1) {
        ++counts_->iris_runs;
      }
    } else if (packet.has("iris")) {
      ++counts_->iris_runs;  // a stage that does not say: the model ran
    }
    if (const Value* value = packet.find("track_redetections")) {
      if (const auto* n = std::get_if<std::int64_t>(value)) {
        std::int64_t& seen = counts_->redetections[packet.stream];
        seen = std::max(seen, *n);
      }
    }
  }

 private:
  std::shared_ptr<Counts> counts_;
};

/// CPU time of one stage's calling threads, summed over its instances' calls.
using CpuCounter = std::shared_ptr<std::atomic<std::int64_t>>;

std::int64_t thread_cpu_ns() { return static_cast<std::int64_t>(thread_cpu_seconds() * 1e9); }

/// Forwards to the real stage and adds the calling thread's CPU time to a counter: CPU time, not
/// wall time, so that a thread preempted by another process (the machine may be busy) does not
/// count as work. Threads the stage hands work to (OpenCV's pool, FFmpeg's decoder threads) are
/// not seen here; the process total catches them.
class TimedStage final : public Stage {
 public:
  TimedStage(std::unique_ptr<Stage> inner, CpuCounter cpu)
      : inner_(std::move(inner)), cpu_(std::move(cpu)) {}
  void process(Packet packet, std::vector<Packet>& out) override {
    const std::int64_t t0 = thread_cpu_ns();
    inner_->process(std::move(packet), out);
    cpu_->fetch_add(thread_cpu_ns() - t0, std::memory_order_relaxed);
  }
  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    const std::int64_t t0 = thread_cpu_ns();
    inner_->process_batch(batch, out);
    cpu_->fetch_add(thread_cpu_ns() - t0, std::memory_order_relaxed);
  }

 private:
  std::unique_ptr<Stage> inner_;
  CpuCounter cpu_;
};

class TimedSource final : public Source {
 public:
  TimedSource(std::unique_ptr<Source> inner, CpuCounter cpu)
      : inner_(std::move(inner)), cpu_(std::move(cpu)) {}
  bool next(std::vector<Packet>& out) override {
    const std::int64_t t0 = thread_cpu_ns();
    const bool more = inner_->next(out);
    cpu_->fetch_add(thread_cpu_ns() - t0, std::memory_order_relaxed);
    return more;
  }
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override {
    return inner_->expected_count();
  }

 private:
  std::unique_ptr<Source> inner_;
  CpuCounter cpu_;
};

/// `pipeline` with every stage's type replaced by a timed twin registered in `registry` (one per
/// stage, since two stages may share a type), and the counters by stage name.
Pipeline timed_pipeline(const Pipeline& pipeline, Registry& registry,
                        std::map<std::string, CpuCounter>& counters) {
  Pipeline timed(pipeline.name());
  timed.set_workers(pipeline.workers());
  timed.set_broker(pipeline.broker());
  if (!pipeline.dead_letter().empty()) timed.set_dead_letter(pipeline.dead_letter());
  for (StageConfig stage : pipeline.stages()) {
    const StageType* original = registry.find(stage.type);
    if (original == nullptr) original = Registry::global().find(stage.type);
    if (original == nullptr) throw std::runtime_error("unknown stage type '" + stage.type + "'");
    StageType twin = *original;
    twin.name = "timed." + stage.name;
    auto cpu = std::make_shared<std::atomic<std::int64_t>>(0);
    counters[stage.name] = cpu;
    if (twin.make) {
      twin.make = [make = original->make, cpu](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<TimedStage>(make(params), cpu);
      };
    } else {
      twin.make_source = [make = original->make_source,
                          cpu](const Params& params) -> std::unique_ptr<Source> {
        return std::make_unique<TimedSource>(make(params), cpu);
      };
    }
    registry.add(std::move(twin));
    stage.type = "timed." + stage.name;
    timed.add(std::move(stage));
  }
  return timed;
}

struct StageFigure {
  std::string name;
  int consumers = 0;
  double busy_share = 0;
  double busy_ms = 0;  // per frame: busy (wall) time, busy_share x elapsed x consumers / frames
  double cpu_ms = 0;   // per frame: CPU time of the threads that called the stage
};

struct RunFigures {
  std::string label;
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  double wall_s = 0;
  double cpu_s = 0;
  int cores = 1;
  int opencv_threads = 0;
  std::uint64_t detector_calls = 0;  // key-frame (or every-frame) detections
  std::int64_t track_redetections = 0;
  std::uint64_t with_face = 0;
  std::uint64_t corrected = 0;
  std::uint64_t iris_runs = 0;
  std::vector<StageFigure> stages;
  std::string bottleneck;

  [[nodiscard]] double frames() const {
    return std::max<double>(1, static_cast<double>(frames_in));
  }
  [[nodiscard]] double fps() const {
    return wall_s > 0 ? static_cast<double>(frames_out) / wall_s : 0;
  }
  [[nodiscard]] double cpu_ms_per_frame() const { return cpu_s * 1e3 / frames(); }
  /// Cores kept busy on average.
  [[nodiscard]] double busy_cores() const { return wall_s > 0 ? cpu_s / wall_s : 0; }
  [[nodiscard]] double cpu_utilisation() const { return busy_cores() / cores; }
  [[nodiscard]] const StageFigure* stage(const std::string& name) const {
    for (const StageFigure& s : stages) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }
  [[nodiscard]] double stage_cpu_ms(const std::string& name) const {
    const StageFigure* s = stage(name);
    return s == nullptr ? 0 : s->cpu_ms;
  }
  /// Process CPU no stage's calling thread accounts for: the engine, and helper threads
  /// (OpenCV's pool, FFmpeg's codec threads).
  [[nodiscard]] double unattributed_cpu_ms() const {
    double attributed = 0;
    for (const StageFigure& s : stages) attributed += s.cpu_ms;
    return cpu_ms_per_frame() - attributed;
  }
  /// Frames per second this run could reach with every core to itself: no faster than its CPU
  /// time spread over all cores, nor than its most loaded stage on the consumers it has. An
  /// estimate from CPU times, not a measurement.
  [[nodiscard]] double idle_fps_estimate() const {
    double limit_ms = cpu_ms_per_frame() / cores;
    for (const StageFigure& s : stages) {
      limit_ms = std::max(limit_ms, s.cpu_ms / std::min(std::max(1, s.consumers), cores));
    }
    return limit_ms > 0 ? 1e3 / limit_ms : 0;
  }
};

std::optional<ParamValue> param_of(const StageConfig& stage, const std::string& key,
                                   ParamType type) {
  const auto found = stage.params.find(key);
  if (found == stage.params.end()) return std::nullopt;
  // --set and retargeting store text, typed only when the stage is built.
  if (const auto* text = std::get_if<std::string>(&found->second);
      text != nullptr && type != ParamType::text) {
    return parse_param(*text, type);
  }
  return found->second;
}

std::int64_t integer_param(const StageConfig& stage, const std::string& key,
                           std::int64_t fallback) {
  const std::optional<ParamValue> value = param_of(stage, key, ParamType::integer);
  const auto* n = value ? std::get_if<std::int64_t>(&*value) : nullptr;
  return n != nullptr ? *n : fallback;
}

/// Detector runs on key frames: face.detect stages run on seq % every == 0.
std::uint64_t key_frame_detections(const Pipeline& pipeline, std::uint64_t frames) {
  std::uint64_t calls = 0;
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type == "face.detect") {
      const auto every =
          static_cast<std::uint64_t>(std::max<std::int64_t>(1, integer_param(stage, "every", 1)));
      calls += (frames + every - 1) / every;
    } else if (stage.type == "eye_contact.monolith") {
      calls += frames;  // it detects on every frame
    }
  }
  return calls;
}

struct RunRequest {
  std::string label;
  fs::path pipeline_file;
  fs::path video;
  std::uint64_t frames = 0;  // 0: all
  std::string count_after;   // the stage the counting stage reads
  int opencv_threads = -1;   // -1: OpenCV's default
  fs::path out_dir;
};

RunFigures run_pipeline(const RunRequest& request) {
  Pipeline pipeline = Pipeline::from_yaml_file(request.pipeline_file);
  fs::create_directories(request.out_dir);
  retarget_pipeline(pipeline, request.video, request.frames, request.out_dir);
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type == "video.sink") pipeline.set_param(stage.name, "codec", kBenchCodec);
  }

  // The counting stage reads what the last processing stage emits; it costs microseconds.
  auto counts = std::make_shared<Counts>();
  Registry registry;
  StageType type;
  type.name = kCountType;
  type.help = "counts faces, patches and re-detections (micromodels bench eye_contact)";
  type.info = [](const Params&) {
    return StageInfo{.optional_reads = {"landmarks", "generated", "iris_measured", "iris",
                                        "track_redetections"}};
  };
  type.make = [counts](const Params&) -> std::unique_ptr<Stage> {
    return std::make_unique<CountStage>(counts);
  };
  registry.add(std::move(type));
  StageConfig count;
  count.name = kCountStage;
  count.type = kCountType;
  count.inputs = {request.count_after};
  pipeline.add(count);
  std::map<std::string, CpuCounter> counters;
  const Pipeline timed = timed_pipeline(pipeline, registry, counters);

  const OpenCvThreads threads(request.opencv_threads);
  RunFigures figures;
  figures.label = request.label;
  figures.cores = usable_cores();
  figures.opencv_threads = threads.active();
  MetricsSnapshot metrics;
  {
    Runner runner(timed, registry);  // loads the models: not timed
    const double cpu0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    runner.start();
    runner.wait();
    figures.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    figures.cpu_s = process_cpu_seconds() - cpu0;
    metrics = runner.metrics();
  }

  const StageMetrics* source = metrics.stage("source");
  const StageMetrics* sink = metrics.stage("sink");
  figures.frames_in =
      std::max<std::uint64_t>(source != nullptr ? source->processed : 0, metrics.packets_in);
  figures.frames_out = sink != nullptr ? sink->processed : 0;
  figures.detector_calls = key_frame_detections(pipeline, figures.frames_in);
  for (const auto& [stream, n] : counts->redetections) figures.track_redetections += n;
  figures.with_face = counts->with_face;
  figures.corrected = counts->corrected;
  figures.iris_runs = counts->iris_runs;
  for (const StageMetrics& s : metrics.stages) {
    if (s.name == kCountStage) continue;
    const auto counter = counters.find(s.name);
    figures.stages.push_back(
        {.name = s.name,
         .consumers = s.consumers,
         .busy_share = s.busy_share,
         .busy_ms = s.busy_share * metrics.elapsed_s * s.consumers * 1e3 / figures.frames(),
         .cpu_ms = counter == counters.end()
                       ? 0.0
                       : static_cast<double>(counter->second->load()) / 1e6 / figures.frames()});
  }
  double worst = -1;
  for (const StageFigure& s : figures.stages) {
    if (s.busy_share > worst) {
      worst = s.busy_share;
      figures.bottleneck = s.name;
    }
  }
  return figures;
}

// ---------------------------------------------------------------------------------------------
// Calibration: the stages alone on one thread, CPU time, OpenCV on one thread.

struct Calibration {
  int frames = 0;
  double detect_ms_per_call = 0;
  double landmarks_ms = 0;
  double iris_alone_ms = 0;          // per frame, one frame per forward pass (as the monolith does)
  double iris_batched_ms = 0;        // per frame, `batch` frames per forward pass
  std::size_t batch = 1;             // the pipeline's batch, or 4 when it does not batch
  std::size_t configured_batch = 1;  // eye.iris's max_batch in the pipeline
};

std::size_t iris_batch_of(const fs::path& pipeline_file) {
  const Pipeline pipeline = Pipeline::from_yaml_file(pipeline_file);
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type == "eye.iris") return std::max<std::size_t>(1, stage.max_batch);
  }
  return 1;
}

template <class Work>
double thread_ms(Work&& work) {
  const double t0 = thread_cpu_seconds();
  work();
  return (thread_cpu_seconds() - t0) * 1e3;
}

Calibration calibrate(const fs::path& video, std::size_t batch) {
  const OpenCvThreads threads(1);
  Calibration c;
  c.configured_batch = batch;
  c.batch = batch > 1 ? batch : 4;  // an unbatched pipeline still gets batching measured
  StageHarness source("video.source",
                      {{"path", video.string()}, {"max_frames", std::int64_t{kCalibrationFrames}}});
  StageHarness detect("face.detect", {{"every", std::int64_t{1}}});
  StageHarness landmarks("face.landmarks68");
  StageHarness iris("eye.iris");
  const std::vector<Packet> frames = source.drain();
  const double n = std::max<double>(1, static_cast<double>(frames.size()));
  c.frames = static_cast<int>(frames.size());
  // The first pass warms up (a DNN's first forward pass allocates); of the others, each figure
  // keeps its lowest: interference from other processes only ever adds time.
  constexpr int kPasses = 4;
  const auto keep_lowest = [](double& kept, double value, int pass) {
    if (pass == 1 || value < kept) kept = value;
  };
  for (int pass = 0; pass < kPasses; ++pass) {
    double detect_ms = 0;
    double landmarks_ms = 0;
    std::vector<Packet> faced;
    for (const Packet& frame : frames) {
      std::vector<Packet> out;
      detect_ms += thread_ms([&] { out = detect.process(frame); });
      Packet p = std::move(out.front());
      Rects face;
      const Value* faces_value = p.find("faces");
      const auto* faces = faces_value != nullptr ? std::get_if<Rects>(faces_value) : nullptr;
      if (faces != nullptr && !faces->empty()) face.push_back(faces->front());
      p.set("face", std::move(face));
      landmarks_ms += thread_ms([&] { out = landmarks.process(std::move(p)); });
      faced.push_back(std::move(out.front()));
    }
    double alone_ms = 0;
    double batched_ms = 0;
    for (const Packet& p : faced) alone_ms += thread_ms([&] { (void)iris.process(p); });
    for (std::size_t i = 0; i < faced.size(); i += batch) {
      const auto first = faced.begin() + static_cast<std::ptrdiff_t>(i);
      const auto last =
          faced.begin() + static_cast<std::ptrdiff_t>(std::min(faced.size(), i + batch));
      std::vector<Packet> group(first, last);
      batched_ms += thread_ms([&] { (void)iris.process_batch(std::move(group)); });
    }
    if (pass == 0) continue;
    keep_lowest(c.detect_ms_per_call, detect_ms / n, pass);
    keep_lowest(c.landmarks_ms, landmarks_ms / n, pass);
    keep_lowest(c.iris_alone_ms, alone_ms / n, pass);
    keep_lowest(c.iris_batched_ms, batched_ms / n, pass);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Report

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

/// The one-minute figure of a load_average() text.
double load_of(const std::string& text) {
  try {
    return std::stod(text);
  } catch (const std::exception&) {
    return 0;
  }
}

Json run_json(const RunFigures& r) {
  Json stages = Json::object();
  for (const StageFigure& s : r.stages) {
    stages[s.name] = Json{{"consumers", s.consumers},
                          {"busy_share", s.busy_share},
                          {"busy_ms_per_frame", s.busy_ms},
                          {"cpu_ms_per_frame", s.cpu_ms}};
  }
  return Json{{"frames_in", r.frames_in},
              {"frames_out", r.frames_out},
              {"wall_s", r.wall_s},
              {"cpu_s", r.cpu_s},
              {"fps", r.fps()},
              {"cpu_ms_per_frame", r.cpu_ms_per_frame()},
              {"unattributed_cpu_ms_per_frame", r.unattributed_cpu_ms()},
              {"busy_cores", r.busy_cores()},
              {"cpu_utilisation", r.cpu_utilisation()},
              {"idle_fps_estimate", r.idle_fps_estimate()},
              {"opencv_threads", r.opencv_threads},
              {"detector_calls", r.detector_calls},
              {"track_redetections", r.track_redetections},
              {"face_share", ratio(static_cast<double>(r.with_face), r.frames())},
              {"corrected_share", ratio(static_cast<double>(r.corrected), r.frames())},
              {"bottleneck", r.bottleneck},
              {"stages", stages}};
}

Json stage_json(const RunFigures& r, double StageFigure::*figure) {
  Json out = Json::object();
  for (const StageFigure& s : r.stages) out[s.name] = s.*figure;
  return out;
}

/// Where the speed-up comes from, per frame of the 360x288 runs (CPU milliseconds).
struct Account {
  double monolith_cpu_ms = 0;
  double micro_cpu_ms = 0;
  double work_ratio = 0;
  double parallelism_ratio = 0;
  double predicted_speedup = 0;
  double detections_per_frame = 0;  // micro: key frames + re-detections, per frame
  double detect_ms_per_call = 0;    // micro run: identify's CPU over its detector calls
  double detection_saved_ms = 0;
  double iris_runs_per_frame = 0;  // micro: frames the iris model ran on, per frame
  double iris_saved_ms = 0;        // iris runs avoided x one run's CPU (calibration)
  double batching_saved_ms = 0;
  double rest_ms = 0;
};

Account account_for(const RunFigures& micro, const RunFigures& mono, const Calibration& c) {
  Account a;
  a.monolith_cpu_ms = mono.cpu_ms_per_frame();
  a.micro_cpu_ms = micro.cpu_ms_per_frame();
  a.work_ratio = ratio(a.monolith_cpu_ms, a.micro_cpu_ms);
  a.parallelism_ratio = ratio(micro.busy_cores(), mono.busy_cores());
  a.predicted_speedup = a.work_ratio * a.parallelism_ratio;
  const double calls = static_cast<double>(micro.detector_calls);
  a.detections_per_frame = (calls + static_cast<double>(micro.track_redetections)) / micro.frames();
  a.detect_ms_per_call = calls > 0 ? micro.stage_cpu_ms("identify") * micro.frames() / calls : 0;
  // The monolith runs the detector on every frame; the pipeline on key frames only, and tracks
  // in between (the track stage's CPU includes its own re-detections).
  a.detection_saved_ms =
      a.detect_ms_per_call * (1 - calls / micro.frames()) - micro.stage_cpu_ms("track");
  a.iris_runs_per_frame = static_cast<double>(micro.iris_runs) / micro.frames();
  const double mono_iris_runs = static_cast<double>(mono.iris_runs) / mono.frames();
  a.iris_saved_ms = c.iris_alone_ms * (mono_iris_runs - a.iris_runs_per_frame);
  // Batching shares a forward pass between the frames the model does run on.
  a.batching_saved_ms =
      c.configured_batch > 1 ? (c.iris_alone_ms - c.iris_batched_ms) * a.iris_runs_per_frame : 0;
  a.rest_ms = (a.monolith_cpu_ms - a.micro_cpu_ms) - a.detection_saved_ms - a.iris_saved_ms -
              a.batching_saved_ms;
  return a;
}

Json account_json(const Account& a) {
  return Json{{"monolith_cpu_ms_per_frame", a.monolith_cpu_ms},
              {"micro_cpu_ms_per_frame", a.micro_cpu_ms},
              {"work_ratio", a.work_ratio},
              {"parallelism_ratio", a.parallelism_ratio},
              {"predicted_speedup", a.predicted_speedup},
              {"micro_detections_per_frame", a.detections_per_frame},
              {"detect_cpu_ms_per_call", a.detect_ms_per_call},
              {"detection_saved_ms_per_frame", a.detection_saved_ms},
              {"micro_iris_runs_per_frame", a.iris_runs_per_frame},
              {"iris_saved_ms_per_frame", a.iris_saved_ms},
              {"batching_saved_ms_per_frame", a.batching_saved_ms},
              {"rest_ms_per_frame", a.rest_ms}};
}

void print_target_row(const char* name, double value, const char* unit,
                      std::optional<double> target) {
  char target_text[24] = "";
  const char* status = "";
  if (target) {
    std::snprintf(target_text, sizeof target_text, ">= %g", *target);
    status = value >= *target ? "met" : "MISSED";
  }
  std::printf("  %-36s %10.3f %-4s %-9s %s\n", name, value, unit, target_text, status);
}

void print_stages(const RunFigures& r) {
  std::printf(
      "\n  %s, per frame: CPU of the stage's calling threads; busy = wall time inside the "
      "stage (busy share x elapsed x consumers / frames)\n",
      r.label.c_str());
  std::printf("    %-16s %9s %11s %11s %9s\n", "stage", "consumers", "CPU ms", "busy ms", "busy");
  for (const StageFigure& s : r.stages) {
    std::printf("    %-16s %9d %11.3f %11.3f %8.0f%%\n", s.name.c_str(), s.consumers, s.cpu_ms,
                s.busy_ms, s.busy_share * 100);
  }
  std::printf("    %-16s %9s %11.3f   (engine, OpenCV and FFmpeg helper threads)\n", "other", "",
              r.unattributed_cpu_ms());
}

void print_run(const RunFigures& r) {
  std::printf(
      "  %-14s %5llu/%-5llu frames %7.2f s wall %7.2f s CPU %6.1f fps  %4.2f cores busy  "
      "OpenCV threads %d  detector %llu + %lld re-detections  face %.0f%%\n",
      r.label.c_str(), static_cast<unsigned long long>(r.frames_in),
      static_cast<unsigned long long>(r.frames_out), r.wall_s, r.cpu_s, r.fps(), r.busy_cores(),
      r.opencv_threads, static_cast<unsigned long long>(r.detector_calls),
      static_cast<long long>(r.track_redetections),
      100 * ratio(static_cast<double>(r.with_face), r.frames()));
}

void print_account(const Account& a, const RunFigures& micro, const RunFigures& mono,
                   const Calibration& c, double speedup) {
  std::printf("\nWhere the speed-up comes from (360x288; CPU time per frame):\n");
  std::printf("  less work:   monolith %.2f ms, micro %.2f ms -> %.2fx\n", a.monolith_cpu_ms,
              a.micro_cpu_ms, a.work_ratio);
  std::printf(
      "    fewer detections: %.3f detector runs a frame instead of 1 (%llu key frames, "
      "%lld re-detections);\n"
      "      %.2f ms a run x %.3f runs avoided - tracking %.2f ms = ~%.2f ms saved\n",
      a.detections_per_frame, static_cast<unsigned long long>(micro.detector_calls),
      static_cast<long long>(micro.track_redetections), a.detect_ms_per_call,
      1 - static_cast<double>(micro.detector_calls) / micro.frames(), micro.stage_cpu_ms("track"),
      a.detection_saved_ms);
  std::printf(
      "    fewer iris runs: the model ran on %.3f of the frames (%llu of %llu; the monolith on "
      "%llu),\n      %.2f ms a run (calibration, one thread) = ~%.2f ms saved\n",
      a.iris_runs_per_frame, static_cast<unsigned long long>(micro.iris_runs),
      static_cast<unsigned long long>(micro.frames_in),
      static_cast<unsigned long long>(mono.iris_runs), c.iris_alone_ms, a.iris_saved_ms);
  if (c.configured_batch > 1) {
    std::printf(
        "    batching: iris %.2f ms a frame alone, %.2f in batches of %zu (calibration, one "
        "thread) = ~%.2f ms saved\n",
        c.iris_alone_ms, c.iris_batched_ms, c.batch, a.batching_saved_ms);
  } else {
    std::printf(
        "    batching: not configured (calibration: %.2f ms a frame in batches of %zu, %.2f "
        "alone)\n",
        c.iris_batched_ms, c.batch, c.iris_alone_ms);
  }
  std::printf(
      "    the rest: %.2f ms (the monolith's OpenCV helper threads %.2f ms vs the micro "
      "run's %.2f ms unattributed; the side-by-side sinks, the same work in both, %.2f and "
      "%.2f ms; noise)\n",
      a.rest_ms, mono.unattributed_cpu_ms(), micro.unattributed_cpu_ms(),
      mono.stage_cpu_ms("side_by_side"), micro.stage_cpu_ms("side_by_side"));
  std::printf("  parallel stages: micro kept %.2f cores busy, monolith %.2f -> %.2fx\n",
              micro.busy_cores(), mono.busy_cores(), a.parallelism_ratio);
  std::printf("  speedup = less work x parallel = %.2f x %.2f = %.2f (measured %.2f)\n",
              a.work_ratio, a.parallelism_ratio, a.predicted_speedup, speedup);
}

}  // namespace

int run_eye_contact_bench(const BenchOptions& options) {
  ensure_vision_stages();
  const fs::path micro_file = find_repo_file("pipelines/eye_contact.yaml");
  const fs::path mono_file = find_repo_file("pipelines/eye_contact_monolith.yaml");
  const fs::path video = media_file("franck.mp4");
  const fs::path video_720p = media_file("franck_720p.mp4");
  const std::uint64_t frames = options.frames > 0 ? options.frames
                               : options.quick    ? kQuickFrames
                                                  : 0;
  const std::uint64_t default_720p = options.quick ? kQuickFrames720p : kFrames720p;
  const std::uint64_t frames_720p =
      options.frames > 0 ? std::min(options.frames, default_720p) : default_720p;
  const ScratchDir scratch("micromodels-bench");
  const std::string load_start = load_average();

  const auto run = [&](const std::string& label, const fs::path& file, const fs::path& input,
                       std::uint64_t n, const std::string& after, int cv_threads) {
    std::cerr << "bench eye_contact: " << label << " ("
              << (n == 0 ? std::string("all") : std::to_string(n)) << " frames)...\n";
    return run_pipeline({.label = label,
                         .pipeline_file = file,
                         .video = input,
                         .frames = n,
                         .count_after = after,
                         .opencv_threads = cv_threads,
                         .out_dir = scratch.path() / label});
  };
  // The pipeline's parallelism is its stages: OpenCV's own threads would only compete with
  // them. The monolith keeps OpenCV's default, as a user would run it.
  const RunFigures micro = run("micro", micro_file, video, frames, "substitute", 1);
  const RunFigures mono = run("monolith", mono_file, video, frames, "monolith", -1);
  const RunFigures micro_720p =
      run("micro_720p", micro_file, video_720p, frames_720p, "substitute", 1);
  const RunFigures mono_720p =
      run("monolith_720p", mono_file, video_720p, frames_720p, "monolith", -1);
  std::cerr << "bench eye_contact: calibration (" << kCalibrationFrames
            << " frames, one thread)...\n";
  const Calibration calibration = calibrate(video, iris_batch_of(micro_file));
  const std::string load_end = load_average();

  const double speedup = ratio(micro.fps(), mono.fps());
  const double speedup_720p = ratio(micro_720p.fps(), mono_720p.fps());
  const Account account = account_for(micro, mono, calibration);

  std::printf(
      "\nmicromodels bench eye_contact%s  (%d cores; load average %s at start, %s at end; "
      "videos encoded %s)\n",
      options.quick ? " --quick (fewer frames: rough figures)" : "", micro.cores,
      load_start.c_str(), load_end.c_str(), kBenchCodec);
  print_run(micro);
  print_run(mono);
  print_run(micro_720p);
  print_run(mono_720p);
  std::printf("\n  %-36s %10s %-4s %-9s\n", "figure", "value", "", "target");
  std::printf("  %s\n", std::string(70, '-').c_str());
  print_target_row("micro_fps (360x288)", micro.fps(), "fps", kFpsTarget);
  print_target_row("monolith_fps (360x288)", mono.fps(), "fps", std::nullopt);
  print_target_row("speedup (360x288)", speedup, "x", kSpeedupTarget);
  print_target_row("cpu_utilisation (micro, 360x288)", micro.cpu_utilisation(), "",
                   kUtilisationTarget);
  print_target_row("micro_fps_720p", micro_720p.fps(), "fps", kFps720pTarget);
  print_target_row("monolith_fps_720p", mono_720p.fps(), "fps", std::nullopt);
  print_target_row("speedup_720p", speedup_720p, "x", std::nullopt);
  print_target_row("cpu_utilisation_720p (micro)", micro_720p.cpu_utilisation(), "", std::nullopt);
  std::printf("  upper bounds with every core free (from CPU times, not measured):\n");
  print_target_row("  micro_fps", micro.idle_fps_estimate(), "fps", std::nullopt);
  print_target_row("  monolith_fps", mono.idle_fps_estimate(), "fps", std::nullopt);
  print_target_row("  micro_fps_720p", micro_720p.idle_fps_estimate(), "fps", std::nullopt);
  print_target_row("  monolith_fps_720p", mono_720p.idle_fps_estimate(), "fps", std::nullopt);
  print_stages(micro);
  print_stages(mono);
  print_stages(micro_720p);
  print_stages(mono_720p);
  print_account(account, micro, mono, calibration, speedup);
  // At the start nothing of ours runs yet; the figure at the end counts our own threads too.
  const double load = load_of(load_start);
  if (load > 0.5 * micro.cores) {
    std::printf(
        "\nNote: the machine was busy (load average %.1f on %d cores at the start): other "
        "processes took CPU, so the wall-time figures (fps, speedup, cpu_utilisation) are "
        "lower than on an idle machine; the CPU-time figures are much less affected.\n",
        load, micro.cores);
  }
  std::fflush(stdout);

  Json results{
      {"micro_fps", micro.fps()},
      {"monolith_fps", mono.fps()},
      {"speedup", speedup},
      {"cpu_utilisation", micro.cpu_utilisation()},
      {"frames_in", micro.frames_in},
      {"frames_out", micro.frames_out},
      {"micro_fps_720p", micro_720p.fps()},
      {"monolith_fps_720p", mono_720p.fps()},
      {"stage_cpu_ms_per_frame", stage_json(micro, &StageFigure::busy_ms)},
      {"stage_cpu_ms_per_frame_note",
       "busy (wall) time inside each stage per frame, busy_share x elapsed x consumers / frames: "
       "a CPU-time estimate for CPU-bound stages that a busy machine inflates (a preempted "
       "thread stays busy); stage_thread_cpu_ms_per_frame is the CPU time measured around each "
       "call"},
      {"stage_thread_cpu_ms_per_frame", stage_json(micro, &StageFigure::cpu_ms)},
      {"speedup_720p", speedup_720p},
      {"cpu_utilisation_720p", micro_720p.cpu_utilisation()},
      {"stage_cpu_ms_per_frame_720p", stage_json(micro_720p, &StageFigure::busy_ms)},
      {"stage_thread_cpu_ms_per_frame_720p", stage_json(micro_720p, &StageFigure::cpu_ms)},
      {"monolith_frames_in", mono.frames_in},
      {"monolith_frames_out", mono.frames_out},
      {"micro_cpu_ms_per_frame", micro.cpu_ms_per_frame()},
      {"monolith_cpu_ms_per_frame", mono.cpu_ms_per_frame()},
      {"detector_calls", micro.detector_calls},
      {"track_redetections", micro.track_redetections},
      {"monolith_detector_calls", mono.detector_calls},
      {"opencv_threads_micro", micro.opencv_threads},
      {"opencv_threads_monolith", mono.opencv_threads},
      {"cores", micro.cores},
      {"quick", options.quick},
      {"frames_720p", micro_720p.frames_in},
      {"video", video.string()},
      {"video_720p", video_720p.string()},
      {"load_average_start", load_start},
      {"load_average_end", load_end},
      {"idle_estimates",
       {{"note",
         "upper bounds on frames/s with every core free, from CPU times (total CPU over the "
         "cores, and the busiest stage over its consumers): not measured"},
        {"micro_fps", micro.idle_fps_estimate()},
        {"monolith_fps", mono.idle_fps_estimate()},
        {"speedup", ratio(micro.idle_fps_estimate(), mono.idle_fps_estimate())},
        {"micro_fps_720p", micro_720p.idle_fps_estimate()},
        {"monolith_fps_720p", mono_720p.idle_fps_estimate()}}},
      {"targets",
       {{"speedup", {{"at_least", kSpeedupTarget}, {"met", speedup >= kSpeedupTarget}}},
        {"cpu_utilisation",
         {{"at_least", kUtilisationTarget},
          {"met", micro.cpu_utilisation() >= kUtilisationTarget}}},
        {"micro_fps", {{"at_least", kFpsTarget}, {"met", micro.fps() >= kFpsTarget}}},
        {"micro_fps_720p",
         {{"at_least", kFps720pTarget}, {"met", micro_720p.fps() >= kFps720pTarget}}}}},
      {"account", account_json(account)},
      {"calibration",
       {{"frames", calibration.frames},
        {"detect_ms_per_call", calibration.detect_ms_per_call},
        {"landmarks_ms_per_frame", calibration.landmarks_ms},
        {"iris_alone_ms_per_frame", calibration.iris_alone_ms},
        {"iris_batched_ms_per_frame", calibration.iris_batched_ms},
        {"iris_batch", calibration.batch},
        {"iris_batch_configured", calibration.configured_batch}}},
      {"runs",
       {{"micro", run_json(micro)},
        {"monolith", run_json(mono)},
        {"micro_720p", run_json(micro_720p)},
        {"monolith_720p", run_json(mono_720p)}}}};
  return write_json_file(results, options.json_path, "bench eye_contact");
}

}  // namespace micromodels::bench
