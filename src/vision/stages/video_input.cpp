#include "video_input.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/display.h>
}

namespace micromodels::vision {

namespace fs = std::filesystem;

namespace {

constexpr double kDefaultFps = 25;
// A live input that stalls this long counts as dropped; opening one waits as long.
constexpr int kLiveTimeoutMs = 5000;
constexpr double kFirstRetryS = 0.5;
constexpr double kLongestRetryS = 8;
// A live input that repeats one frame, byte for byte, this long is reopened: it froze, or it
// changed frame size, which OpenCV's FFmpeg reader does not follow (it repeats the last frame
// of the old size).
constexpr double kFrozenS = 2;
// Reads that may fail in a row, in a file that has frames left, before it counts as ended: each
// failed read skips at least one damaged packet.
constexpr int kDamagedReads = 512;
// Frames a video whose container does not count them may end short of the estimate from its
// duration without a warning.
constexpr std::uint64_t kEstimateSlack = 2;

// The name of the format FFmpeg reads a file as (from its header); empty when FFmpeg cannot
// open it (OpenCV's open then says why).
std::string format_of(const std::string& path) {
  AVFormatContext* context = nullptr;
  if (avformat_open_input(&context, path.c_str(), nullptr, nullptr) != 0) return "";
  std::string name = context->iformat != nullptr ? context->iformat->name : "";
  avformat_close_input(&context);
  return name;
}

// What the header of a file's first video stream says.
struct VideoHeader {
  // The clockwise turn (0, 90, 180 or 270 degrees) with which players show the frames: its
  // display matrix, read as FFmpeg's own tools read it. A phone stores a portrait video as
  // landscape frames and this turn.
  int turn = 0;
  // Whether the container counts the frames (MP4 does; Matroska and MPEG-TS do not, and
  // OpenCV's frame count is then an estimate from the duration).
  bool counted = false;
};

VideoHeader video_header(const std::string& path) {
  VideoHeader header;
  AVFormatContext* context = nullptr;
  if (avformat_open_input(&context, path.c_str(), nullptr, nullptr) != 0) return header;
  int& turn = header.turn;
  for (unsigned i = 0; i < context->nb_streams; ++i) {
    const AVStream* stream = context->streams[i];
    if (stream->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) continue;
    header.counted = stream->nb_frames > 0;
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100)
    const AVPacketSideData* side =
        av_packet_side_data_get(stream->codecpar->coded_side_data,
                                stream->codecpar->nb_coded_side_data, AV_PKT_DATA_DISPLAYMATRIX);
    const std::uint8_t* matrix = side != nullptr ? side->data : nullptr;
#else
    const std::uint8_t* matrix =
        av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nullptr);
#endif
    if (matrix != nullptr) {
      // av_display_rotation_get counts counter-clockwise.
      const double degrees =
          -av_display_rotation_get(reinterpret_cast<const std::int32_t*>(matrix));
      if (std::isfinite(degrees))
        turn = static_cast<int>(((std::lround(degrees / 90) % 4) + 4) % 4) * 90;
    }
    break;
  }
  avformat_close_input(&context);
  return header;
}

// What a file FFmpeg reads holds when none of it is video ("audio", "audio, subtitles"); empty
// when it has a video stream or FFmpeg cannot read it.
std::string streams_without_video(const std::string& path) {
  AVFormatContext* context = nullptr;
  if (avformat_open_input(&context, path.c_str(), nullptr, nullptr) != 0) return "";
  std::string kinds;
  bool video = false;
  if (avformat_find_stream_info(context, nullptr) >= 0) {
    for (unsigned i = 0; i < context->nb_streams; ++i) {
      const AVMediaType type = context->streams[i]->codecpar->codec_type;
      if (type == AVMEDIA_TYPE_VIDEO) video = true;
      const char* name = av_get_media_type_string(type);
      const std::string kind = name != nullptr ? name : "unknown";
      if (kinds.find(kind) == std::string::npos) kinds += (kinds.empty() ? "" : ", ") + kind;
    }
  }
  avformat_close_input(&context);
  if (video) return "";
  return kinds.empty() ? "no streams at all" : kinds + " only";
}

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

bool all_digits(const std::string& text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

// Sleeps `seconds` unless `stop` is requested first; returns false when it was.
bool sleep_unless_stopped(const std::stop_token& stop, double seconds) {
  std::mutex mutex;
  std::condition_variable_any wake;
  std::unique_lock lock(mutex);
  return !wake.wait_for(lock, stop, std::chrono::duration<double>(seconds), [] { return false; });
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
  if (path.size() <= 2 && all_digits(path)) return VideoInputKind::camera;
  if (path.starts_with("/dev/video") && all_digits(path.substr(10))) {
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

bool is_live(VideoInputKind kind) noexcept {
  return kind == VideoInputKind::camera || kind == VideoInputKind::url;
}

VideoInput::VideoInput(VideoInputOptions options)
    : options_(std::move(options)),
      kind_(classify_video_input(options_.path)),
      opened_at_(std::chrono::steady_clock::now()) {
  // The options were checked by check_source_options (video_source.hpp).
  if (kind_ == VideoInputKind::image_file || kind_ == VideoInputKind::image_folder) {
    open_images();
  } else {
    open_capture();
  }
  // Reading the first frame now turns an undecodable input into a configuration error, found
  // before the pipeline starts, instead of a stream that silently ends at once.
  first_ = kind_ == VideoInputKind::image_file || kind_ == VideoInputKind::image_folder
               ? read_image_frame()
               : read_capture_frame();
  if (!first_) {
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

std::string VideoInput::describe() const {
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

bool VideoInput::open_live() {
  if (kind_ == VideoInputKind::url) {
    // Timeouts so that an unreachable or stalled stream fails (and is retried) instead of
    // blocking the reader for FFmpeg's default of 30 s.
    return capture_.open(options_.path, cv::CAP_FFMPEG,
                         {cv::CAP_PROP_OPEN_TIMEOUT_MSEC, kLiveTimeoutMs,
                          cv::CAP_PROP_READ_TIMEOUT_MSEC, kLiveTimeoutMs});
  }
  if (all_digits(options_.path)) return capture_.open(std::stoi(options_.path), cv::CAP_ANY);
  return capture_.open(options_.path, cv::CAP_V4L2);
}

bool VideoInput::open_file() {
  if (!capture_.open(options_.path, cv::CAP_FFMPEG)) return false;
  // The turn is applied here, as players apply it: OpenCV 4.6 turns 90 and 270 degrees the
  // other way, which shows a phone's portrait video upside down.
  capture_.set(cv::CAP_PROP_ORIENTATION_AUTO, 0);
  const VideoHeader header = video_header(options_.path);
  turn_ = header.turn;
  counted_ = header.counted;
  return true;
}

void VideoInput::open_capture() {
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
    if (format_of(path) == "tty") {  // FFmpeg would draw the characters as frames
      throw std::runtime_error("video.source: '" + path +
                               "' is text, not a video; check the 'path' parameter");
    }
    // FFmpeg explicitly: with CAP_ANY a file FFmpeg rejects is offered to other backends
    // (GStreamer, image sequences) that fail later and more obscurely.
    if (!open_file()) {
      if (const std::string what = streams_without_video(path); !what.empty()) {
        throw std::runtime_error("video.source: '" + path + "' holds no video stream (" + what +
                                 "); give a video file");
      }
      throw std::runtime_error("video.source: cannot open '" + path +
                               "' as a video: FFmpeg does not recognise it (corrupt, truncated "
                               "or not a video); check it with: ffprobe '" +
                               path + "'");
    }
  } else if (!open_live()) {
    if (kind_ == VideoInputKind::url) {
      throw std::runtime_error("video.source: cannot open stream '" + path +
                               "' (refused, not found, or no answer within " +
                               std::to_string(kLiveTimeoutMs / 1000) +
                               " s); check the server is up and the URL is right (try: ffprobe '" +
                               path + "')");
    }
    throw std::runtime_error("video.source: cannot open camera " + path +
                             (all_digits(path) ? " (/dev/video" + path + ")" : std::string()) +
                             "; check it exists and no other program holds it");
  }

  const double reported_fps = capture_.get(cv::CAP_PROP_FPS);
  if (std::isfinite(reported_fps) && reported_fps > 0 && reported_fps < 1000) {
    fps_ = reported_fps;
  } else {
    fps_ = options_.fps > 0 ? options_.fps : kDefaultFps;
  }
  if (kind_ != VideoInputKind::video_file) return;

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
  if (options_.start == 0) return;
  // FFmpeg's seek lands on the exact frame for the files we checked; when it does not say so,
  // decode from the beginning, which is slow but exact.
  capture_.set(cv::CAP_PROP_POS_FRAMES, static_cast<double>(options_.start));
  if (std::llround(capture_.get(cv::CAP_PROP_POS_FRAMES)) ==
      static_cast<long long>(options_.start)) {
    return;
  }
  open_file();
  for (std::uint64_t i = 0; i < options_.start; ++i) {
    if (!capture_.grab()) break;  // the first read then fails and reports `start` past the end
  }
}

void VideoInput::open_images() {
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

std::optional<VideoFrame> VideoInput::read(const std::stop_token& stop) {
  if (first_) return std::exchange(first_, std::nullopt);
  if (kind_ == VideoInputKind::image_file || kind_ == VideoInputKind::image_folder) {
    return read_image_frame();
  }
  std::optional<VideoFrame> frame = read_capture_frame();
  if (frame && live() && frozen(frame->pixels)) {
    spdlog::warn("video.source: {} repeated the same frame for {} s: it froze, or changed frame "
                 "size, which the reader follows only by reopening it",
                 describe(), kFrozenS);
    if (options_.count) options_.count("frozen");
    frame.reset();
  }
  if (!frame && live()) frame = reconnect(stop);
  return frame;
}

bool VideoInput::frozen(const cv::Mat& pixels) {
  const bool same = !last_pixels_.empty() && last_pixels_.size() == pixels.size() &&
                    pixels.isContinuous() && last_pixels_.isContinuous() &&
                    std::equal(pixels.datastart, pixels.dataend, last_pixels_.datastart);
  repeats_ = same ? repeats_ + 1 : 0;
  last_pixels_ = pixels;  // shares the pixels of the packet: no copy
  if (static_cast<double>(repeats_) < kFrozenS * fps_) return false;
  repeats_ = 0;
  last_pixels_.release();
  return true;
}

std::optional<VideoFrame> VideoInput::reconnect(const std::stop_token& stop) {
  capture_.release();
  if (options_.reconnect_s <= 0) {
    spdlog::error("video.source: {} dropped after {} frames; it ends (reconnect_s is 0)",
                  describe(), read_);
    return std::nullopt;
  }
  spdlog::warn("video.source: {} dropped after {} frames; reconnecting for up to {} s",
               describe(), read_, options_.reconnect_s);
  const auto dropped_at = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - dropped_at).count();
  };
  double wait_s = kFirstRetryS;
  for (int attempt = 1;; ++attempt) {
    const double left = options_.reconnect_s - elapsed();
    if (left <= 0) break;
    if (!sleep_unless_stopped(stop, std::min(wait_s, left))) return std::nullopt;
    wait_s = std::min(2 * wait_s, kLongestRetryS);
    spdlog::info("video.source: reconnecting to {} (attempt {}, {:.1f} s after the drop)",
                 describe(), attempt, elapsed());
    if (options_.count) options_.count("reconnects");
    if (!open_live()) continue;
    if (std::optional<VideoFrame> frame = read_capture_frame()) {
      ++reconnected_;
      spdlog::info("video.source: {} is back after {} attempt(s), {:.1f} s", describe(),
                   attempt, elapsed());
      return frame;
    }
    capture_.release();
  }
  spdlog::error("video.source: gave up on {} after {} s without a frame; its stream ends",
                describe(), options_.reconnect_s);
  return std::nullopt;
}

void VideoInput::note_size(const cv::Mat& pixels) {
  if (size_ && *size_ != pixels.size()) {
    spdlog::warn("video.source: {} changed frame size from {}x{} to {}x{} at frame {}",
                 describe(), size_->width, size_->height, pixels.cols, pixels.rows, read_);
  }
  size_ = pixels.size();
}

std::optional<VideoFrame> VideoInput::read_capture_frame() {
  // A fresh Mat per frame: packets share its pixels (zero-copy), so the decoder must never
  // write into a Mat an earlier packet still holds.
  cv::Mat pixels;
  bool got = capture_.isOpened() && capture_.read(pixels) && !pixels.empty();
  if (!got && kind_ == VideoInputKind::video_file && expected_ && read_ < *expected_) {
    // A packet the decoder refuses (a damaged stretch of the file) ends OpenCV's read, and the
    // reads after it go on past it, as FFmpeg's own tools do. At the end they fail at once.
    int failed = 1;
    for (; !got && failed < kDamagedReads; ++failed) {
      got = capture_.read(pixels) && !pixels.empty();
    }
    if (got) {
      spdlog::warn(
          "video.source: {} is damaged after frame {} ({:.2f} s): {} reads failed, "
          "frames there are left out (the sink keeps the one before on screen); "
          "going on",
          describe(), read_, static_cast<double>(last_time_ns_) / 1e9, failed - 1);
    }
  }
  if (!got) {
    if (expected_ && read_ < *expected_ && read_ > 0) {
      if (counted_) {
        spdlog::warn("video.source: {} ended after {} of the {} frames its header announces",
                     describe(), read_, *expected_);
      } else if (*expected_ - read_ > kEstimateSlack) {
        // Without a count in the container, a frame or two off the duration's estimate is the
        // estimate's own error, not frames lost.
        spdlog::warn(
            "video.source: {} ended after {} frames, where its duration suggests "
            "about {} (its container does not count them)",
            describe(), read_, *expected_);
      }
    }
    return std::nullopt;
  }
  if (turn_ != 0) {
    cv::Mat turned;
    cv::rotate(pixels, turned,
               turn_ == 90    ? cv::ROTATE_90_CLOCKWISE
               : turn_ == 180 ? cv::ROTATE_180
                              : cv::ROTATE_90_COUNTERCLOCKWISE);
    pixels = turned;
  }
  VideoFrame frame{frame_as_bgr8(std::move(pixels), describe()), 0};
  note_size(frame.pixels);
  const auto step_ns = static_cast<std::int64_t>(std::llround(1e9 / fps_));
  if (live()) {
    // When it was read, on a steady clock from when the input was first opened: a live input's
    // own timestamps restart when it reconnects, and a camera's follow the device's clock.
    frame.time_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - opened_at_)
                        .count();
    frame.time_ns = std::max(frame.time_ns, read_ == 0 ? 0 : last_time_ns_ + 1);
  } else {
    const double msec = capture_.get(cv::CAP_PROP_POS_MSEC);
    const auto from_decoder = static_cast<std::int64_t>(std::llround(msec * 1e6));
    // Trust the decoder's timestamp while it is sane (present, increasing); otherwise go on at
    // the gap between the last two frames it timed, or at the nominal rate before it timed two,
    // so that time_ns stays monotonic. OpenCV times no frame the decoder hands out after the
    // file's end (as many as it holds back to reorder them): with a varying rate the nominal
    // rate, an average, would move them off their times.
    // A gap far off the nominal one (a damaged stretch's times jump) is not gone on with.
    const bool plausible_step = last_step_ns_ >= step_ns / 4 && last_step_ns_ <= 4 * step_ns;
    if (std::isfinite(msec) && msec >= 0 && (read_ == 0 || from_decoder > last_time_ns_)) {
      if (read_ > 0) last_step_ns_ = from_decoder - last_time_ns_;
      frame.time_ns = from_decoder;
    } else {
      frame.time_ns = read_ == 0 ? static_cast<std::int64_t>(std::llround(
                                       static_cast<double>(options_.start) * 1e9 / fps_))
                                 : last_time_ns_ + (plausible_step ? last_step_ns_ : step_ns);
    }
  }
  ++read_;
  last_time_ns_ = frame.time_ns;
  return frame;
}

std::optional<VideoFrame> VideoInput::read_image_frame() {
  if (next_image_ >= images_.size()) return std::nullopt;
  const fs::path& path = images_[next_image_];
  // IMREAD_COLOR: gray and 16-bit become 8-bit BGR, alpha is dropped, EXIF rotation applied.
  cv::Mat pixels = cv::imread(path.string(), cv::IMREAD_COLOR);
  if (pixels.empty()) {
    throw std::runtime_error("video.source: cannot decode image '" + path.string() +
                             "'; it is corrupt or in a format OpenCV does not read");
  }
  VideoFrame frame{
      frame_as_bgr8(std::move(pixels), path.string()),
      static_cast<std::int64_t>(std::llround(static_cast<double>(next_image_) * 1e9 / fps_))};
  note_size(frame.pixels);
  ++next_image_;
  ++read_;
  return frame;
}

}  // namespace micromodels::vision
