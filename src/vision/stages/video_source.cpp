#include "video_source.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include "image_mat.hpp"

namespace micromodels::vision {

namespace fs = std::filesystem;

namespace {

constexpr double kDefaultFps = 25;

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The pipeline promises 8-bit BGR whatever the input; decoders hand out gray, BGRA or 16-bit
// only for unusual files, so the common case costs nothing.
cv::Mat frame_as_bgr8(cv::Mat frame, const std::string& where) {
  if (frame.depth() != CV_8U) {
    double scale = 1;
    if (frame.depth() == CV_16U) scale = 1.0 / 257;
    if (frame.depth() == CV_32F || frame.depth() == CV_64F) scale = 255;  // [0, 1] by convention
    cv::Mat converted;
    frame.convertTo(converted, CV_8U, scale);
    frame = converted;
  }
  cv::Mat bgr;
  switch (frame.channels()) {
    case 3:
      return frame;
    case 1:
      cv::cvtColor(frame, bgr, cv::COLOR_GRAY2BGR);
      return bgr;
    case 4:
      cv::cvtColor(frame, bgr, cv::COLOR_BGRA2BGR);
      return bgr;
    default:
      throw std::runtime_error("video.source: " + where + ": frames with " +
                               std::to_string(frame.channels()) +
                               " channels are not supported (expected 1, 3 or 4)");
  }
}

std::string absolute_text(const std::string& path) {
  std::error_code error;
  const fs::path absolute = fs::absolute(path, error);
  return error ? path : absolute.string();
}

}  // namespace

bool is_image_file_name(const fs::path& path) {
  static const char* const kExtensions[] = {".png",  ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
                                            ".webp", ".ppm", ".pgm",  ".pbm", ".pnm", ".jp2",
                                            ".exr",  ".hdr", ".pfm",  ".sr",  ".ras"};
  const std::string extension = lower(path.extension().string());
  return std::any_of(std::begin(kExtensions), std::end(kExtensions),
                     [&](const char* known) { return extension == known; });
}

VideoInputKind classify_video_input(const std::string& path) {
  if (!path.empty() && path.size() <= 2 &&
      std::all_of(path.begin(), path.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return VideoInputKind::camera;
  }
  if (path.find("://") != std::string::npos) return VideoInputKind::url;
  std::error_code error;
  if (fs::is_directory(path, error) || (!path.empty() && path.back() == '/')) {
    return VideoInputKind::image_folder;
  }
  if (is_image_file_name(path)) return VideoInputKind::image_file;
  return VideoInputKind::video_file;
}

VideoSource::VideoSource(VideoSourceOptions options)
    : options_(std::move(options)), kind_(classify_video_input(options_.path)) {
  if (options_.path.empty()) {
    throw std::runtime_error(
        "video.source: 'path' is empty; give a video file, an image, a folder of images, a camera "
        "index such as \"0\" or a stream URL");
  }
  if (options_.fps < 0) throw std::runtime_error("video.source: 'fps' must be >= 0");
  if (kind_ == VideoInputKind::image_file || kind_ == VideoInputKind::image_folder) {
    open_images();
  } else {
    open_capture();
  }
  if (expected_ && options_.max_frames > 0) expected_ = std::min(*expected_, options_.max_frames);
  // Reading the first frame now turns an undecodable input into a configuration error, found
  // before the pipeline starts, instead of a stream that silently ends at once.
  pending_ = read_frame();
  if (!pending_) {
    if (options_.start > 0) {
      throw std::runtime_error(
          "video.source: no frame at 'start' = " + std::to_string(options_.start) + " in " +
          describe() + "; it is past the end, lower 'start'");
    }
    throw std::runtime_error("video.source: no frame could be decoded from " + describe() +
                             "; check it is a complete video in a format FFmpeg reads (try: "
                             "ffprobe '" +
                             options_.path + "')");
  }
}

std::string VideoSource::describe() const {
  switch (kind_) {
    case VideoInputKind::camera:
      return "camera " + options_.path;
    case VideoInputKind::url:
      return "stream '" + options_.path + "'";
    case VideoInputKind::image_folder:
      return "folder '" + options_.path + "'";
    default:
      return "'" + options_.path + "'";
  }
}

void VideoSource::open_capture() {
  const std::string& path = options_.path;
  if (kind_ == VideoInputKind::video_file) {
    std::error_code error;
    if (!fs::exists(path, error)) {
      throw std::runtime_error("video.source: '" + path + "' does not exist (looked for " +
                               absolute_text(path) +
                               "); check the 'path' parameter, or run scripts/fetch_media.sh for "
                               "the sample media");
    }
    if (!fs::is_regular_file(path, error)) {
      throw std::runtime_error("video.source: '" + path + "' is not a regular file");
    }
    // FFmpeg explicitly: with CAP_ANY a file FFmpeg rejects is offered to other backends
    // (GStreamer, image sequences) that fail later and more obscurely.
    if (!capture_.open(path, cv::CAP_FFMPEG)) {
      throw std::runtime_error("video.source: cannot open '" + path +
                               "' as a video: FFmpeg does not recognise it (corrupt, truncated "
                               "or not a video); check it with: ffprobe '" +
                               path + "'");
    }
  } else if (kind_ == VideoInputKind::url) {
    if (!capture_.open(path, cv::CAP_FFMPEG)) {
      throw std::runtime_error("video.source: cannot open stream '" + path +
                               "'; check the URL is reachable (try: ffprobe '" + path + "')");
    }
  } else {
    const int index = std::stoi(path);
    if (!capture_.open(index, cv::CAP_ANY)) {
      throw std::runtime_error("video.source: cannot open camera " + path + " (/dev/video" + path +
                               "); check it exists and no other program holds it");
    }
  }

  const double reported_fps = capture_.get(cv::CAP_PROP_FPS);
  if (std::isfinite(reported_fps) && reported_fps > 0 && reported_fps < 1000) {
    fps_ = reported_fps;
  } else {
    fps_ = options_.fps > 0 ? options_.fps : kDefaultFps;
  }

  if (kind_ == VideoInputKind::video_file) {
    const double count = capture_.get(cv::CAP_PROP_FRAME_COUNT);
    if (std::isfinite(count) && count > 0) {
      const auto frames = static_cast<std::uint64_t>(std::llround(count));
      if (options_.start >= frames) {
        throw std::runtime_error("video.source: 'start' = " + std::to_string(options_.start) +
                                 " is past the end of '" + path + "', which has " +
                                 std::to_string(frames) + " frames");
      }
      expected_ = frames - options_.start;
    }
  }

  if (options_.start == 0) return;
  if (kind_ == VideoInputKind::video_file) {
    // FFmpeg's seek lands on the exact frame for the files we checked; when it does not say so,
    // decode from the beginning, which is slow but exact.
    capture_.set(cv::CAP_PROP_POS_FRAMES, static_cast<double>(options_.start));
    if (std::llround(capture_.get(cv::CAP_PROP_POS_FRAMES)) ==
        static_cast<long long>(options_.start)) {
      return;
    }
    capture_.open(path, cv::CAP_FFMPEG);
  }
  for (std::uint64_t i = 0; i < options_.start; ++i) {
    if (!capture_.grab()) break;  // the first read then fails and reports `start` past the end
  }
}

void VideoSource::open_images() {
  const fs::path path(options_.path);
  std::error_code error;
  if (kind_ == VideoInputKind::image_file) {
    if (!fs::is_regular_file(path, error)) {
      throw std::runtime_error("video.source: image '" + options_.path +
                               "' does not exist (looked for " + absolute_text(options_.path) +
                               "); check the 'path' parameter");
    }
    images_.push_back(path);
  } else {
    if (!fs::is_directory(path, error)) {
      throw std::runtime_error("video.source: folder '" + options_.path +
                               "' does not exist (looked for " + absolute_text(options_.path) +
                               "); check the 'path' parameter");
    }
    for (const fs::directory_entry& entry : fs::directory_iterator(path, error)) {
      if (entry.is_regular_file() && is_image_file_name(entry.path())) {
        images_.push_back(entry.path());
      }
    }
    if (error) {
      throw std::runtime_error("video.source: cannot list folder '" + options_.path +
                               "': " + error.message());
    }
    if (images_.empty()) {
      throw std::runtime_error("video.source: folder '" + options_.path +
                               "' holds no images (.png, .jpg, .bmp, .tif, ...); put the frames "
                               "there or point 'path' at a video");
    }
    std::sort(images_.begin(), images_.end(), [](const fs::path& a, const fs::path& b) {
      return a.filename().string() < b.filename().string();
    });
  }
  if (options_.start >= images_.size()) {
    throw std::runtime_error("video.source: 'start' = " + std::to_string(options_.start) +
                             " is past the end of " + describe() + ", which has " +
                             std::to_string(images_.size()) + " image(s)");
  }
  next_image_ = static_cast<std::size_t>(options_.start);
  fps_ = options_.fps > 0 ? options_.fps : kDefaultFps;
  expected_ = images_.size() - options_.start;
}

std::optional<VideoSource::Frame> VideoSource::read_frame() {
  std::optional<Frame> frame =
      kind_ == VideoInputKind::image_file || kind_ == VideoInputKind::image_folder
          ? read_image_frame()
          : read_capture_frame();
  if (frame) {
    ++read_;
    last_time_ns_ = frame->time_ns;
  }
  return frame;
}

std::optional<VideoSource::Frame> VideoSource::read_capture_frame() {
  // A fresh Mat per frame: packets share its pixels (zero-copy), so the decoder must never
  // write into a Mat an earlier packet still holds.
  cv::Mat pixels;
  if (!capture_.read(pixels) || pixels.empty()) {
    if (expected_ && read_ < *expected_ && read_ > 0) {
      spdlog::warn("video.source: {} ended after {} of the {} frames its header announces",
                   describe(), read_, *expected_);
    }
    return std::nullopt;
  }
  Frame frame{frame_as_bgr8(std::move(pixels), describe()), 0};
  const double msec = capture_.get(cv::CAP_PROP_POS_MSEC);
  const auto step_ns = static_cast<std::int64_t>(std::llround(1e9 / fps_));
  const auto from_decoder = static_cast<std::int64_t>(std::llround(msec * 1e6));
  // Trust the decoder's timestamp while it is sane (present, increasing); otherwise count
  // frames at the nominal rate so that time_ns stays monotonic.
  if (std::isfinite(msec) && msec >= 0 && (read_ == 0 || from_decoder > last_time_ns_)) {
    frame.time_ns = from_decoder;
  } else {
    frame.time_ns = read_ == 0 ? static_cast<std::int64_t>(
                                     std::llround(static_cast<double>(options_.start) * 1e9 / fps_))
                               : last_time_ns_ + step_ns;
  }
  return frame;
}

std::optional<VideoSource::Frame> VideoSource::read_image_frame() {
  if (next_image_ >= images_.size()) return std::nullopt;
  const fs::path& path = images_[next_image_];
  // IMREAD_COLOR: gray and 16-bit become 8-bit BGR, alpha is dropped, EXIF rotation applied.
  cv::Mat pixels = cv::imread(path.string(), cv::IMREAD_COLOR);
  if (pixels.empty()) {
    throw std::runtime_error("video.source: cannot decode image '" + path.string() +
                             "'; it is corrupt or in a format OpenCV does not read");
  }
  Frame frame{
      frame_as_bgr8(std::move(pixels), path.string()),
      static_cast<std::int64_t>(std::llround(static_cast<double>(next_image_) * 1e9 / fps_))};
  ++next_image_;
  return frame;
}

bool VideoSource::next(std::vector<Packet>& out) {
  if (read_error_) std::rethrow_exception(std::exchange(read_error_, nullptr));
  if (!pending_) return false;
  Packet packet;
  packet.stream = options_.stream;
  packet.seq = emitted_++;
  packet.time_ns = pending_->time_ns;
  packet.set("frame", to_image(pending_->pixels));
  packet.set("fps", fps_);
  out.push_back(std::move(packet));
  pending_.reset();
  if (options_.max_frames > 0 && emitted_ >= options_.max_frames) return false;
  try {
    pending_ = read_frame();
  } catch (...) {
    // The packet just made is good: deliver it now and report the failure on the next call.
    read_error_ = std::current_exception();
    return true;
  }
  return pending_.has_value();
}

}  // namespace micromodels::vision
