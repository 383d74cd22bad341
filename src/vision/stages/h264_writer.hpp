// H264Writer: writes an H.264 video file (libx264) through FFmpeg's own libraries.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace micromodels::vision {

/// An H.264 file (.mp4, .m4v, .mov, .mkv) written with libx264 at a chosen preset and
/// constant-quality factor. OpenCV's VideoWriter (4.6) opens libx264 with its slowest useful
/// defaults (preset medium, a bit rate of about 1 bit per pixel) and passes no encoder options
/// through, and at 720p that encode took more CPU than all the models of the eye-contact
/// pipeline. Frames are BGR, 8-bit, all of the size given at open; an odd width or height is
/// written one pixel larger, its last column or row repeated (4:2:0 needs even sizes).
class H264Writer {
 public:
  /// Opens `path` for frames of `size` at a nominal `fps` (what players report); throws
  /// std::runtime_error saying why it cannot.
  H264Writer(const std::string& path, cv::Size size, double fps, const std::string& preset,
             int crf);
  ~H264Writer();  // finishes the file (errors are logged)
  H264Writer(const H264Writer&) = delete;
  H264Writer& operator=(const H264Writer&) = delete;

  /// x264's speed presets, fastest first.
  [[nodiscard]] static const std::vector<std::string>& presets();

  /// A frame shown from `time_ns` after the video's start until the next frame's time (the
  /// last one for a frame at `fps`); throws std::runtime_error on an encoder or disk error.
  void write(const cv::Mat& bgr, std::int64_t time_ns);
  void finish();                   // flushes the encoder and writes the index; idempotent
  /// The first failure to write to the file (a full disk, an I/O error), empty when none: the
  /// file is then incomplete, whatever was written after.
  [[nodiscard]] const std::string& write_error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace micromodels::vision
