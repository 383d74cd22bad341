#include "eye_contact_support.hpp"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <variant>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <sched.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "micromodels/registry.hpp"
#include "micromodels/vision/vision_stages.hpp"

#include "vision/models/model_files.hpp"

namespace micromodels::bench {

namespace fs = std::filesystem;

fs::path find_repo_file(const std::string& relative) {
  std::error_code ec;
  const fs::path here = fs::current_path(ec) / relative;
  if (!ec && fs::exists(here, ec)) return here;
#ifdef MICROMODELS_SOURCE_DIR
  const fs::path built_from = fs::path(MICROMODELS_SOURCE_DIR) / relative;
  if (fs::exists(built_from, ec)) return built_from;
  throw std::runtime_error("cannot find '" + relative + "' in the current directory nor in " +
                           std::string(MICROMODELS_SOURCE_DIR));
#else
  throw std::runtime_error("cannot find '" + relative + "' in the current directory");
#endif
}

fs::path media_file(const std::string& name) {
  const fs::path path = vision::media_dir() / name;
  vision::require_file(path, "sample video");
  return path;
}

void ensure_vision_stages() {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  Registry& registry = Registry::global();
  if (registry.find("video.source") == nullptr) vision::register_stages(registry);
}

ScratchDir::ScratchDir(const std::string& prefix, bool keep) : keep_(keep) {
  std::string pattern = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(),
                            "cannot create a folder like " + pattern);
  }
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  if (keep_) return;
  std::error_code ignored;  // a leftover temp folder is not worth failing a run for
  fs::remove_all(path_, ignored);
}

fs::path retarget_pipeline(Pipeline& pipeline, const fs::path& video, std::uint64_t frames,
                           const fs::path& out_dir, const std::string& main_sink,
                           std::uint64_t start) {
  pipeline.set_param("source", "path", video.string());
  pipeline.set_param("source", "max_frames", std::to_string(frames));
  pipeline.set_param("source", "start", std::to_string(start));
  fs::path main_path;
  for (const StageConfig& stage : pipeline.stages()) {
    if (stage.type != "video.sink") continue;
    const fs::path path = out_dir / (stage.name + ".mp4");
    pipeline.set_param(stage.name, "path", path.string());
    if (stage.name == main_sink) main_path = path;
    for (const auto& [param, suffix] : {std::pair{"contact_sheet", "_sheet.png"}, std::pair{"eye_strip", "_eyes.png"}}) {
      const auto picture = stage.params.find(param);
      if (picture == stage.params.end()) continue;
      const auto* text = std::get_if<std::string>(&picture->second);
      if (text != nullptr && !text->empty()) {
        pipeline.set_param(stage.name, param, (out_dir / (stage.name + suffix)).string());
      }
    }
  }
  if (main_path.empty()) {
    throw std::runtime_error("pipeline '" + pipeline.name() + "' has no video.sink named '" +
                             main_sink + "'");
  }
  return main_path;
}

double process_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

OpenCvThreads::OpenCvThreads(int threads) : previous_(cv::getNumThreads()) {
  if (threads >= 0) cv::setNumThreads(threads);
}

OpenCvThreads::~OpenCvThreads() { cv::setNumThreads(previous_); }

int OpenCvThreads::active() const { return cv::getNumThreads(); }

VideoFacts read_video_facts(const fs::path& path, bool count_frames) {
  cv::VideoCapture capture(path.string(), cv::CAP_FFMPEG);
  if (!capture.isOpened()) throw std::runtime_error("cannot open video '" + path.string() + "'");
  VideoFacts facts;
  facts.width = static_cast<int>(capture.get(cv::CAP_PROP_FRAME_WIDTH));
  facts.height = static_cast<int>(capture.get(cv::CAP_PROP_FRAME_HEIGHT));
  facts.fps = capture.get(cv::CAP_PROP_FPS);
  while (count_frames && capture.grab()) ++facts.frames;
  return facts;
}

}  // namespace micromodels::bench
