// `micromodels bench redis`: the Redis broker against raw hiredis, bytes on the wire, and the
// eye-contact pipeline's frame rate embedded and on Redis with 1, 2 and 3 worker processes.
//
// Without --broker it starts its own redis-server on a free loopback port (no persistence) and
// stops it at the end. All figures of one run come from the same Redis and the same machine
// load, so the ratios mean more than the absolute rates.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench.hpp"
#include "child_process.hpp"
#include "json_file.hpp"
#include "redis_context.hpp"
#include "micromodels/redis.hpp"
#include "micromodels/runner.hpp"
#include "stats.hpp"
#ifdef MICROMODELS_HAS_VISION
#include "eye_contact_support.hpp"
#endif

namespace micromodels::bench {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The floor: one connection, batches of 64 XADDs pipelined, then XREADGROUP COUNT 64 and one
// XACK of those ids; 1 KiB messages. Messages per second through one stream.
double raw_hiredis(const std::string& url, int messages) {
  Context ctx(url);
  const std::string key = "mm:bench:raw";
  ctx.command({"DEL", key});
  ctx.command({"XGROUP", "CREATE", key, "g", "0", "MKSTREAM"});
  const std::string payload(1024, 'x');
  constexpr int kBatch = 64;
  const auto start = Clock::now();
  for (int done = 0; done < messages; done += kBatch) {
    for (int i = 0; i < kBatch; ++i) ctx.append({"XADD", key, "*", "p", payload});
    for (int i = 0; i < kBatch; ++i) freeReplyObject(ctx.read());
    ctx.append({"XREADGROUP", "GROUP", "g", "c", "COUNT", std::to_string(kBatch), "STREAMS", key, ">"});
    redisReply* read = ctx.read();
    std::vector<std::string> ack = {"XACK", key, "g"};
    const redisReply* entries = read->element[0]->element[1];
    for (std::size_t i = 0; i < entries->elements; ++i) {
      ack.emplace_back(entries->element[i]->element[0]->str, entries->element[i]->element[0]->len);
    }
    freeReplyObject(read);
    ctx.append(ack);
    freeReplyObject(ctx.read());
    // Keeps Redis memory flat, as the broker's trimming does.
    if (done % 4096 == 0) ctx.command({"XTRIM", key, "MAXLEN", "~", "1000"});
  }
  const double rate = messages / seconds_since(start);
  ctx.command({"DEL", key});
  return rate;
}

// Ours: source -> sink through one Redis stream (the run process produces and collects, as a
// single-machine run does), 1 KiB payloads. Packets per second through that hop.
double broker_hop(const std::string& url, int messages) {
  Pipeline p("bench_hop");
  p.add({.name = "source",
         .type = "synthetic.source",
         .params = {{"count", std::int64_t{messages}}, {"payload_bytes", std::int64_t{1024}}}});
  p.add({.name = "sink", .type = "bench.payload_sink", .queue_capacity = 4096});
  // A `pass` that reads the payload: the hop carries only what its stage reads.
  Registry registry = Registry::global();
  StageType sink = *registry.find("pass");
  sink.name = "bench.payload_sink";
  sink.info = [](const Params&) { return StageInfo{.reads = {"payload"}}; };
  registry.add(std::move(sink));
  Runner run(p, std::make_unique<RedisTransport>(RedisOptions{.url = url}), registry);
  // Timed as raw_hiredis is: without the set-up (its connection and consumer group; here the
  // run's connection, stream reset and consumer groups, which start() does) and without the
  // tear-down, until the last packet has reached the sink. The threads' own connections stay
  // inside the timed part, and so does up to 0.5 ms of polling; the sink's last XACK does not,
  // where raw_hiredis waits for its last XACK's reply: one round trip, well under 0.1 ms.
  run.start();
  const auto start = Clock::now();
  const auto expected = static_cast<std::uint64_t>(messages);
  // Polled every 0.5 ms (wait_for would also tear the run down); a run that fails never gets
  // there, and wait_for below then throws its error.
  while (run.progress().done < expected && seconds_since(start) < 120) {
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  const double seconds = seconds_since(start);
  while (!run.wait_for(50)) {
  }
  return static_cast<double>(run.progress().done) / seconds;
}

// Waits until `processes` distinct processes announce consumers of pipeline `name`.
void wait_for_workers(const std::string& url, const std::string& name, int processes) {
  Context ctx(url);
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    ctx.append({"ZRANGE", "mm:{" + name + "}:live", "0", "-1"});
    redisReply* r = ctx.read();
    std::set<std::string> seen;
    for (std::size_t i = 0; i < r->elements; ++i) {
      const std::string m(r->element[i]->str, r->element[i]->len);
      seen.insert(m.substr(m.find('|') + 1, m.rfind('|') - m.find('|') - 1));
    }
    freeReplyObject(r);
    if (static_cast<int>(seen.size()) >= processes) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("bench: workers did not come up within 120 s");
}

// A stage that waits 10 ms per packet (a remote model: no CPU), one consumer per worker
// process: packets per second with k worker processes. This is the figure that shows what
// more machines give, since waiting does not compete for this machine's two cores.
double sleep_stage_rate(const std::string& url, int workers, int packets, const fs::path& dir) {
  const std::string name = "bench_scale";
  const fs::path file = dir / "bench_scale.yaml";
  std::ofstream(file) << "pipeline: " << name << "\nstages:\n"
                      << "  - { name: source, type: synthetic.source, params: { count: " << packets
                      << " } }\n"
                      << "  - { name: work, type: model.sleep, params: { service_ms: 10 } }\n"
                      << "  - { name: sink, type: pass }\n";
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < workers; ++i) {
    children.push_back(std::make_unique<Child>(std::vector<std::string>{
        "/proc/self/exe", "worker", file.string(), "--broker", url, "--stages", "work"}));
  }
  wait_for_workers(url, name, workers);
  Runner run(Pipeline::from_yaml_file(file),
             std::make_unique<RedisTransport>(
                 RedisOptions{.url = url, .serve = RedisOptions::Serve::none}));
  const auto start = Clock::now();
  run.start();
  while (!run.wait_for(20)) {
  }
  return static_cast<double>(run.progress().done) / seconds_since(start);
}


void row(const char* name, double value, const char* unit, const char* note = "") {
  std::printf("  %-28s %12.2f %-10s %s\n", name, value, unit, note);
}

#ifdef MICROMODELS_HAS_VISION
struct EyeContact {
  fs::path file;
  fs::path video;
  std::uint64_t frames;
  fs::path out;
  std::vector<std::string> sets() const {
    std::vector<std::string> s = {"source.path=" + video.string(),
                                  "source.max_frames=" + std::to_string(frames)};
    for (const char* sink : {"sink", "side_by_side"}) {
      s.push_back(std::string(sink) + ".path=" + (out / (std::string(sink) + ".mp4")).string());
    }
    s.push_back("side_by_side.contact_sheet=" + (out / "sheet.png").string());
    s.push_back("side_by_side.eye_strip=" + (out / "eyes.png").string());
    return s;
  }
  Pipeline pipeline() const {
    Pipeline p = Pipeline::from_yaml_file(file);
    for (const std::string& s : sets()) p.set_param(s);
    return p;
  }
  // The same pipeline with other `wire:` settings (`settings`: "image_refs: false"), a copy of
  // the file named after `tag`, for the worker processes too.
  EyeContact with_wire(const std::string& tag, const std::string& settings) const {
    EyeContact copy = *this;
    copy.file = out / ("eye_contact_" + tag + ".yaml");
    std::ifstream in(file);
    std::ofstream(copy.file) << in.rdbuf() << "\nwire: { " << settings << " }\n";
    return copy;
  }
};

// Per frame: the entries of each hop, and the images stored for it, over the hops of a run.
struct HopFigures {
  double entries_per_hop = 0;            // mean over hops
  double entries_per_unchanged_hop = 0;  // mean over the hops that stored no image
  double images_per_frame = 0;           // images stored, summed over hops
  double total_per_hop = 0;              // (entries + images) / hops
  Json by_hop = Json::object();
};

HopFigures hop_figures(const std::vector<HopBytes>& hops, bool print) {
  HopFigures f;
  double unchanged = 0;
  int unchanged_hops = 0;
  for (const HopBytes& h : hops) {
    const double n = h.packets > 0 ? static_cast<double>(h.packets) : 1;
    const double entries = static_cast<double>(h.bytes) / n;
    const double images = static_cast<double>(h.image_bytes) / n;
    if (print) std::printf("  %-14s -> %-14s %10.0f B entries %10.0f B images\n", h.from.c_str(), h.to.c_str(), entries, images);
    f.by_hop[h.from + ">" + h.to] = {{"entries", entries}, {"images", images}};
    f.entries_per_hop += entries;
    f.images_per_frame += images;
    if (h.image_bytes == 0) {
      unchanged += entries;
      ++unchanged_hops;
    }
  }
  if (!hops.empty()) {
    f.total_per_hop = (f.entries_per_hop + f.images_per_frame) / static_cast<double>(hops.size());
    f.entries_per_hop /= static_cast<double>(hops.size());
  }
  if (unchanged_hops > 0) f.entries_per_unchanged_hop = unchanged / unchanged_hops;
  return f;
}

double fps_embedded(const EyeContact& e) {
  Runner runner(e.pipeline());
  const auto start = Clock::now();
  runner.start();
  runner.wait();
  return static_cast<double>(runner.metrics().packets_in) / seconds_since(start);
}

// Redis's used_memory in bytes (INFO memory).
double redis_used_memory(Context& redis) {
  const std::string info = redis.text({"INFO", "memory"});
  const auto at = info.find("used_memory:");
  return at == std::string::npos ? 0 : std::atof(info.c_str() + at + 12);
}

// k worker processes (this tool, `worker ... --stages <every middle stage>`), the run serving
// nothing; timed from the run's start, after every worker has loaded its models.
// `most_memory`: the most Redis held while the run ran, sampled every 100 ms.
double fps_redis(const EyeContact& e, const std::string& url, int workers,
                 std::vector<HopBytes>* hops, double* most_memory = nullptr) {
  Pipeline p = e.pipeline();  // the run reads the same file as the workers
  p.set_broker(url);
  std::string middle;
  for (const StageConfig& s : p.stages()) {
    if (s.type != "video.source" && s.type != "video.sink") middle += (middle.empty() ? "" : ",") + s.name;
  }
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> args = {"/proc/self/exe", "worker", e.file.string(), "--broker", url,
                                     "--stages", middle};
    for (const std::string& s : e.sets()) {
      args.push_back("--set");
      args.push_back(s);
    }
    children.push_back(std::make_unique<Child>(args, (e.out / ("worker" + std::to_string(i) + ".log")).string()));
  }
  // Every worker announces its stages once it has built them (models loaded).
  wait_for_workers(url, p.name(), workers);
  auto transport = std::make_unique<RedisTransport>(
      RedisOptions{.url = url, .serve = RedisOptions::Serve::none});
  RedisTransport& redis = *transport;
  Runner run(p, std::move(transport));
  std::optional<Context> memory;
  if (most_memory != nullptr) {
    memory.emplace(url);
    *most_memory = 0;
  }
  const auto start = Clock::now();
  run.start();
  while (!run.wait_for(100)) {
    if (memory) *most_memory = std::max(*most_memory, redis_used_memory(*memory));
  }
  const double fps = static_cast<double>(run.progress().done) / seconds_since(start);
  if (hops != nullptr) *hops = redis.hop_bytes();
  return fps;
}
#endif

}  // namespace

int run_redis_bench(const BenchOptions& options, bool hop_only) {
  std::optional<Child> server;
  std::string url = options.broker;
  if (url.empty()) {
    const int port = free_port();
    server.emplace(std::vector<std::string>{"redis-server", "--port", std::to_string(port), "--bind",
                                            "127.0.0.1", "--save", "", "--appendonly", "no"});
    url = "redis://127.0.0.1:" + std::to_string(port);
    for (int i = 0;; ++i) {
      try {
        Context probe(url);
        break;
      } catch (const std::exception&) {
        if (i > 200) throw std::runtime_error("bench: redis-server did not start on " + url);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  std::printf("bench redis on %s%s\n", url.c_str(), server ? " (started for this run)" : "");
  const int messages = options.quick ? 5000 : 50000;
  const int trials = options.quick ? 1 : 3;
  std::vector<double> raw, ours;
  for (int t = 0; t < trials; ++t) {  // interleaved, so that both see the same load
    raw.push_back(raw_hiredis(url, messages));
    ours.push_back(broker_hop(url, messages));
  }
  const double raw_rate = median(raw);
  const double our_rate = median(ours);
  const double ratio = raw_rate > 0 ? our_rate / raw_rate : 0;
  Json json = {{"url", url},
               {"messages", messages},
               {"trials", trials},
               {"hiredis_msgs_per_s", raw_rate},
               {"broker_hop_packets_per_s", our_rate},
               {"ratio_vs_hiredis", ratio}};
  std::printf("\n1 KiB packets, %d per trial, median of %d:\n", messages, trials);
  row("hiredis_msgs_per_s", raw_rate, "/s", "(XADD+XREADGROUP+XACK, pipelined by 64)");
  row("broker_hop_packets_per_s", our_rate, "/s", "(source -> sink through one stream)");
  row("ratio_vs_hiredis", ratio, "", ratio >= 1.0 ? "target >= 1.0: met" : "target >= 1.0: MISSED");
  if (options.quick) {
    std::printf("  (--quick: %d packets, so the threads' start-up (their connections, the sink's\n"
                "   take-over of its stream) weighs on broker_hop; the full run's 50,000 packets give\n"
                "   the figure)\n",
                messages);
  }

  if (hop_only) return write_json_file(json, options.json_path, "bench redis");

  {
    const fs::path dir = fs::temp_directory_path();
    const int packets = options.quick ? 100 : 400;
    std::printf("\nA 10 ms waiting stage (a remote model), one consumer per worker process, %d packets:\n",
                packets);
    for (int k = 1; k <= 3; ++k) {
      const double rate = sleep_stage_rate(url, k, packets, dir);
      const std::string name = "sleep_stage_rate_" + std::to_string(k);
      row(name.c_str(), rate, "/s", k == 1 ? "(ideal: 100/s per worker)" : "");
      json[name] = rate;
    }
    fs::remove(dir / "bench_scale.yaml");
  }

#ifdef MICROMODELS_HAS_VISION
  try {
    ensure_vision_stages();
    const ScratchDir scratch("micromodels_bench_redis");
    EyeContact e{.file = find_repo_file("pipelines/eye_contact.yaml"),
                 .video = media_file("franck.mp4"),
                 .frames = options.frames > 0 ? options.frames : (options.quick ? 30 : 2400),
                 .out = scratch.path()};
    std::printf("\neye contact, %llu frames of %s:\n", static_cast<unsigned long long>(e.frames),
                e.video.filename().c_str());
    const double embedded = fps_embedded(e);
    row("fps_embedded", embedded, "fps");
    json["eye_contact_frames"] = e.frames;
    json["fps_embedded"] = embedded;
    std::vector<HopBytes> hops;
    double most_memory = 0;
    for (int k = 1; k <= 3; ++k) {
      const double fps = fps_redis(e, url, k, k == 1 ? &hops : nullptr, k == 1 ? &most_memory : nullptr);
      const std::string name = "fps_redis_" + std::to_string(k);
      row(name.c_str(), fps, "fps", k == 1 ? "(worker processes, each serving every stage)" : "");
      json[name] = fps;
    }
    const double ratio_1 = embedded > 0 ? json["fps_redis_1"].get<double>() / embedded : 0;
    row("fps_redis_1_vs_embedded", ratio_1, "", ratio_1 >= 0.6 ? "target >= 0.6: met" : "target >= 0.6: MISSED");
    json["fps_redis_1_vs_embedded"] = ratio_1;
    // Images go 5 s after the sinks have their frame: Redis holds the frames in flight (and
    // the images no sink refers to, for wire.image_ttl_s), not every image of the run.
    const double mb = most_memory / (1 << 20);
    row("redis_memory_mb_1", mb, "MB", "(the most Redis held during the 1-worker run, used_memory every 100 ms)");
    json["redis_memory_mb_1"] = mb;
    // The same with every image in every hop (wire.image_refs false): the figures before.
    std::vector<HopBytes> hops_no_refs;
    const double no_refs = fps_redis(e.with_wire("no_refs", "image_refs: false"), url, 1, &hops_no_refs);
    row("fps_redis_1_no_refs", no_refs, "fps", "(wire: { image_refs: false })");
    json["fps_redis_1_no_refs"] = no_refs;
    json["fps_redis_1_no_refs_vs_embedded"] = embedded > 0 ? no_refs / embedded : 0;

    std::printf("\nbytes per frame per hop (1 worker run, raw images by reference):\n");
    const HopFigures f = hop_figures(hops, true);
    row("bytes_per_frame_per_hop", f.entries_per_hop, "B", "(entries, mean over hops)");
    row("bytes_per_frame_per_hop_unchanged", f.entries_per_unchanged_hop, "B",
        f.entries_per_unchanged_hop <= 2000 ? "(hops that stored no image; target <= 2000: met)"
                                            : "(hops that stored no image; target <= 2000: MISSED)");
    row("image_bytes_per_frame", f.images_per_frame, "B", "(stored once per image, all hops)");
    row("bytes_per_frame_per_hop_total", f.total_per_hop, "B", "((entries + images) / hops)");
    json["bytes_per_frame_per_hop"] = f.entries_per_hop;
    json["bytes_per_frame_per_hop_unchanged"] = f.entries_per_unchanged_hop;
    json["image_bytes_per_frame"] = f.images_per_frame;
    json["bytes_per_frame_per_hop_total"] = f.total_per_hop;
    json["bytes_per_frame_by_hop"] = f.by_hop;
    const HopFigures before = hop_figures(hops_no_refs, false);
    row("bytes_per_frame_per_hop_no_refs", before.total_per_hop, "B", "(every image in every hop)");
    json["bytes_per_frame_per_hop_no_refs"] = before.total_per_hop;
    // The same with JPEG (quality 90) on the wire, this process serving every stage.
    {
      Pipeline p = e.pipeline();
      auto transport = std::make_unique<RedisTransport>(
          RedisOptions{.url = url, .serve = RedisOptions::Serve::all, .wire_images = "jpeg"});
      RedisTransport& redis = *transport;
      Runner run(p, std::move(transport));
      const auto start = Clock::now();
      run.start();
      while (!run.wait_for(100)) {
      }
      const double fps = static_cast<double>(run.progress().done) / seconds_since(start);
      const double jpeg_mean = hop_figures(redis.hop_bytes(), false).total_per_hop;
      row("bytes_per_frame_per_hop_jpeg", jpeg_mean, "B", "(--wire-images jpeg, quality 90; (entries + images) / hops)");
      row("fps_redis_run_only_jpeg", fps, "fps", "(the run serving every stage, jpeg)");
      json["bytes_per_frame_per_hop_jpeg"] = jpeg_mean;
      json["fps_redis_run_only_jpeg"] = fps;
    }
  } catch (const std::exception& error) {
    std::printf("eye contact part skipped: %s\n", error.what());
    json["eye_contact_error"] = error.what();
  }
#endif
  return write_json_file(json, options.json_path, "bench redis");
}

}  // namespace micromodels::bench
