// `sink.jsonl`: one JSON object per packet, one line each: stream, seq, time and the fields
// (pixels and tensors summarised by their shape).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "builtin_stages.hpp"

namespace micromodels::detail {

namespace {

nlohmann::json to_json(const Value& value) {
  return std::visit(
      [](const auto& v) -> nlohmann::json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Image>) {
          return {{"width", v.width}, {"height", v.height}, {"channels", v.channels}};
        } else if constexpr (std::is_same_v<T, Tensor>) {
          return {{"shape", v.shape}};
        } else if constexpr (std::is_same_v<T, Rects>) {
          nlohmann::json rects = nlohmann::json::array();
          for (const Rect& r : v) rects.push_back({r.x, r.y, r.width, r.height, r.score});
          return rects;
        } else if constexpr (std::is_same_v<T, Points>) {
          nlohmann::json points = nlohmann::json::array();
          for (const Point& p : v) points.push_back({p.x, p.y});
          return points;
        } else if constexpr (std::is_same_v<T, Buffer>) {
          return {{"bytes", v.size()}};
        } else {
          return v;
        }
      },
      value);
}

class JsonlSink final : public Stage {
 public:
  explicit JsonlSink(const std::string& path) : path_(path) {
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    file_.open(path, std::ios::trunc);
    if (!file_) throw std::runtime_error("cannot write '" + path + "': check the folder exists and is writable");
  }

  void process(Packet packet, std::vector<Packet>& /*out*/) override {
    nlohmann::json line = {{"stream", packet.stream}, {"seq", packet.seq}, {"time_ns", packet.time_ns}};
    nlohmann::json fields = nlohmann::json::object();
    for (const auto& field : packet.fields) fields[field.name] = to_json(field.value);
    line["fields"] = std::move(fields);
    const std::string text = line.dump() + '\n';
    std::lock_guard lock(mutex_);  // consumers > 1 share the file
    file_ << text;
    if (!file_) throw std::runtime_error("write to '" + path_ + "' failed (disk full?)");
  }

 private:
  std::string path_;
  std::mutex mutex_;
  std::ofstream file_;
};

}  // namespace

void register_jsonl_sink(Registry& registry) {
  registry.add({.name = "sink.jsonl",
                .help = "Writes one JSON line per packet (stream, seq, time_ns, fields).",
                .params = {{"path", ParamType::text, std::nullopt, "output file (.jsonl)"}},
                .info =
                    [](const Params& params) {
                      return StageInfo{
                          .reads_all = true,
                          .files_written = {{.param = "path", .path = params.text("path")}}};
                    },
                .make = [](const Params& params) -> std::unique_ptr<Stage> {
                  return std::make_unique<JsonlSink>(params.text("path"));
                }});
}

}  // namespace micromodels::detail
