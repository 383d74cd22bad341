// What `bench eye_contact` and `eval eye_contact` share: finding the pipelines and media, a
// scratch folder, the vision stages in the global registry, CPU clocks and OpenCV's threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "micromodels/pipeline.hpp"

namespace micromodels::bench {

/// `relative` (e.g. "pipelines/eye_contact.yaml") under the current directory if it is there,
/// else under the source tree this was built from. Throws std::runtime_error naming both.
[[nodiscard]] std::filesystem::path find_repo_file(const std::string& relative);

/// A fetched sample video (<cache>/media/NAME, as scripts/fetch_media.sh puts it). Throws
/// std::runtime_error naming the path and the fetch script when it is missing.
[[nodiscard]] std::filesystem::path media_file(const std::string& name);

/// Registers the vision stages in Registry::global() unless `video.source` is already there
/// (the command-line tool may have done it). Safe to call from several threads.
void ensure_vision_stages();

/// A fresh folder under the system's temp directory; removed by the destructor unless `keep`.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix, bool keep = false);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  bool keep_;
};

/// Points the pipeline at `video` (source.path), limits it to `frames` (source.max_frames; 0:
/// all) from frame `start` (source.start, whatever the file says) and sends every video.sink (and its
/// contact sheet and eye strip) into `out_dir`, named after the stage: NAME.mp4,
/// NAME_sheet.png, NAME_eyes.png. Returns the path of the sink stage named `main_sink`.
std::filesystem::path retarget_pipeline(Pipeline& pipeline, const std::filesystem::path& video,
                                        std::uint64_t frames, const std::filesystem::path& out_dir,
                                        const std::string& main_sink = "sink",
                                        std::uint64_t start = 0);

/// User + system CPU time of this process (all threads) so far, seconds.
[[nodiscard]] double process_cpu_seconds();
/// CPU time of the calling thread so far, seconds.
[[nodiscard]] double thread_cpu_seconds();
/// Cores this process may run on (its affinity mask), at least 1.
[[nodiscard]] int usable_cores();

/// OpenCV's thread count for the lifetime of the object (cv::setNumThreads), then back to what
/// it was. `threads` < 0 keeps OpenCV's default. `active()` is what OpenCV then reports.
class OpenCvThreads {
 public:
  explicit OpenCvThreads(int threads);
  ~OpenCvThreads();
  OpenCvThreads(const OpenCvThreads&) = delete;
  OpenCvThreads& operator=(const OpenCvThreads&) = delete;
  [[nodiscard]] int active() const;

 private:
  int previous_;
};

/// A video file's size and rate and, when `count_frames`, the frames it holds, counted by
/// decoding it (container counts can be wrong); otherwise `frames` is 0.
struct VideoFacts {
  std::uint64_t frames = 0;
  int width = 0;
  int height = 0;
  double fps = 0;
};
[[nodiscard]] VideoFacts read_video_facts(const std::filesystem::path& path,
                                          bool count_frames = true);

}  // namespace micromodels::bench
