// `video.source`: frames from a video file, an image, a folder of images, a camera or a stream.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/stage.hpp"

namespace micromodels::vision {

/// What a `path` parameter names; decides how frames are read and whether reading blocks.
enum class VideoInputKind { video_file, image_file, image_folder, camera, url };

/// "0".."99": a camera index; "scheme://...": a stream URL; an existing folder; a file whose
/// extension is an image format; anything else is taken for a video file.
[[nodiscard]] VideoInputKind classify_video_input(const std::string& path);

/// True for the extensions OpenCV's imread reads (case-insensitive): .png, .jpg, .jpeg, ...
[[nodiscard]] bool is_image_file_name(const std::filesystem::path& path);

struct VideoSourceOptions {
  std::string path;
  std::uint32_t stream = 0;
  std::uint64_t max_frames = 0;  // 0: all
  std::uint64_t start = 0;       // frames (or images) skipped before the first packet
  double fps = 0;                // for images and inputs that report no rate; 0: 25
};

/// Packets with field `frame` (Image, 8-bit BGR; gray and BGRA inputs are converted) and `fps`
/// (double), `seq` from 0 and `time_ns` from the frame's timestamp (seq / fps when the input
/// has none). Everything that can go wrong with the input (missing, undecodable, empty, `start`
/// past the end) is found in the constructor, which throws std::runtime_error naming the path.
///
///   VideoSource source({.path = "franck.mp4", .max_frames = 100});
///   std::vector<Packet> out;
///   while (source.next(out)) {}
class VideoSource final : public Source {
 public:
  explicit VideoSource(VideoSourceOptions options);

  bool next(std::vector<Packet>& out) override;
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override { return expected_; }
  [[nodiscard]] double fps() const noexcept { return fps_; }
  [[nodiscard]] VideoInputKind kind() const noexcept { return kind_; }

 private:
  struct Frame {
    cv::Mat pixels;
    std::int64_t time_ns = 0;
  };

  void open_capture();
  void open_images();
  std::optional<Frame> read_frame();
  std::optional<Frame> read_capture_frame();
  std::optional<Frame> read_image_frame();
  [[nodiscard]] std::string describe() const;

  VideoSourceOptions options_;
  VideoInputKind kind_;
  cv::VideoCapture capture_;
  std::vector<std::filesystem::path> images_;  // image_file / image_folder, sorted by name
  std::size_t next_image_ = 0;
  double fps_ = 25;
  std::optional<std::uint64_t> expected_;
  std::optional<Frame> pending_;   // read ahead, so that the last packet can end the stream
  std::exception_ptr read_error_;  // from reading ahead; rethrown by the following next()
  std::uint64_t emitted_ = 0;
  std::uint64_t read_ = 0;  // frames read so far, counting from `start`
  std::int64_t last_time_ns_ = 0;
};

}  // namespace micromodels::vision
