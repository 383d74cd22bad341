// One input of `video.source`: a video file, an image, a folder of images, a camera or a
// stream, read frame by frame; a live input that drops is reopened with backoff.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

namespace micromodels::vision {

/// What a `path` names; decides how frames are read and whether the input is live.
enum class VideoInputKind { video_file, image_file, image_folder, camera, url };

/// "0".."99" or "/dev/videoN": a camera; "scheme://...": a stream URL; an existing folder; a
/// file whose extension is an image format; anything else is taken for a video file.
[[nodiscard]] VideoInputKind classify_video_input(const std::string& path);

/// A camera or a stream: it cannot seek, has no frame count and delivers at its own rate.
[[nodiscard]] bool is_live(VideoInputKind kind) noexcept;

/// True for the extensions OpenCV's imread reads (case-insensitive): .png, .jpg, .jpeg, ...
[[nodiscard]] bool is_image_file_name(const std::filesystem::path& path);

struct VideoInputOptions {
  std::string path;
  std::uint64_t start = 0;   // frames (or images) skipped first; files and folders only
  double fps = 0;            // for images and inputs that report no rate; 0: 25
  double reconnect_s = 30;   // live: how long to retry after the input drops; 0: never
  // Where a live input counts its events (Source::count): "reconnects", each attempt to reopen
  // it; "frozen", each time it repeated one frame for 2 s. Empty: not counted.
  std::function<void(std::string_view event)> count{};
};

struct VideoFrame {
  cv::Mat pixels;               // 8-bit BGR
  std::int64_t time_ns = 0;     // a file's media time; a live input's time since it opened
  std::int64_t capture_ns = 0;  // when it was delivered (capture_clock_ns()); 0: not stamped
};

/// Opens in the constructor, which also decodes the first frame, so that everything that can
/// go wrong with the input at start (missing, unreachable, undecodable, `start` past the end)
/// throws std::runtime_error naming the path and what to check. Not thread-safe: one reader.
class VideoInput {
 public:
  explicit VideoInput(VideoInputOptions options);

  /// The next frame; nullopt at the end: a file's last frame was read, or a live input dropped
  /// and did not come back within `reconnect_s` (each attempt logged, with backoff from 0.5 s
  /// doubling to 8 s), or `stop` was requested while it waited to retry. A live input that
  /// repeats one frame for 2 s counts as dropped: that is how OpenCV's reader shows a change of
  /// frame size, which reopening the input follows.
  std::optional<VideoFrame> read(const std::stop_token& stop = {});

  [[nodiscard]] VideoInputKind kind() const noexcept { return kind_; }
  [[nodiscard]] const std::string& path() const noexcept { return options_.path; }
  [[nodiscard]] bool live() const noexcept { return is_live(kind_); }
  [[nodiscard]] double fps() const noexcept { return fps_; }
  /// Frames the input will deliver, when known (a file or a folder).
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const noexcept { return expected_; }
  /// Times a live input came back after it dropped (each after one or more attempts).
  [[nodiscard]] std::uint64_t reconnected() const noexcept { return reconnected_.load(); }
  /// "'clip.mp4'", "camera 0", "stream 'rtsp://...'": how messages name the input.
  [[nodiscard]] std::string describe() const;

 private:
  void open_capture();
  void open_images();
  bool open_live();
  bool open_file();  // a video file, with the turn players give its frames
  std::optional<VideoFrame> read_capture_frame();
  std::optional<VideoFrame> read_image_frame();
  std::optional<VideoFrame> reconnect(const std::stop_token& stop);
  void note_size(const cv::Mat& pixels);
  // True when a live input has repeated `pixels` for 2 s (counted here, frame by frame).
  bool frozen(const cv::Mat& pixels);

  VideoInputOptions options_;
  VideoInputKind kind_;
  cv::VideoCapture capture_;
  std::vector<std::filesystem::path> images_;  // image_file / image_folder, sorted by name
  std::size_t next_image_ = 0;
  double fps_ = 25;
  std::optional<std::uint64_t> expected_;
  std::optional<VideoFrame> first_;  // decoded by the constructor, returned by the first read
  std::uint64_t read_ = 0;           // frames read so far, counting from `start`
  std::int64_t last_time_ns_ = 0;
  bool counted_ = false;  // the file's container counts its frames: expected_ is not an estimate
  int turn_ = 0;  // clockwise degrees a file's frames are turned by to be shown (display matrix)
  std::int64_t last_step_ns_ = 0;  // between the last two frames the decoder timed; 0: none yet
  std::chrono::steady_clock::time_point opened_at_;
  std::atomic<std::uint64_t> reconnected_ = 0;  // read by other threads
  std::optional<cv::Size> size_;  // of the last frame, to log a change of size
  cv::Mat last_pixels_;           // a live input's last frame, to see it repeat
  std::uint64_t repeats_ = 0;     // frames equal to the one before, in a row
};

}  // namespace micromodels::vision
