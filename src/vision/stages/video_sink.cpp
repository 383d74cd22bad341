// `video.sink` (video_sink.hpp). About 620 lines: one stage's outputs (a file, a folder of PNGs,
// a network stream, one per stream id) and what it composes into them (side by side, the eye
// inset, the contact sheet, the eye strip) share its options and its per-stream outputs.
#include "video_sink.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include "micromodels/params.hpp"

#include "audio_copy.hpp"
#include "core/detail/suggest.hpp"
#include "eye_views.hpp"
#include "image_mat.hpp"

namespace micromodels::vision {

namespace fs = std::filesystem;

namespace {

constexpr double kDefaultFps = 25;
// H.264 files: a constant quality of 20 keeps the enlarged eyes of a side-by-side video sharp.
constexpr int kH264Crf = 20;
constexpr std::size_t kSheetTiles = 6;
constexpr std::size_t kSheetColumns = 3;
constexpr std::size_t kSheetKeepMax = 12;  // frames held while the video's length is unknown
constexpr int kMaxTileWidth = 640;
constexpr int kStripTileWidth = 480;  // an eye strip tile: both eyes, enlarged about 6x
constexpr float kEyesAspect = 3.0f;   // width over height of an enlarged view of both eyes
const cv::Scalar kLandmarkColor(0, 255, 0);
const cv::Scalar kIrisColor(0, 0, 255);

// Errors this stage raises itself; they already name the path.
class SinkError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Fails now, at configuration time, if `path` cannot be created, rather than at the first frame
// or, for the contact sheet, silently at close. Leaves no file behind that was not there.
void check_writable(const fs::path& path, const std::string& what) {
  std::error_code error;
  const fs::path parent = path.parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, error);
    if (error) {
      throw SinkError("video.sink: cannot create the folder of " + what + " '" + path.string() +
                      "': " + error.message());
    }
  }
  const bool existed = fs::exists(path, error);
  {
    std::ofstream probe(path, std::ios::app | std::ios::binary);
    if (!probe) {
      throw SinkError("video.sink: cannot write " + what + " '" + path.string() +
                      "'; check the folder exists and is writable");
    }
  }
  if (!existed) fs::remove(path, error);
}

// A BGR 8-bit view of `image` (no copy when it is BGR already), the only layout encoders take.
cv::Mat bgr8(const Image& image, const std::string& field) {
  if (image.depth != Depth::u8) {
    throw SinkError("image field '" + field + "' is 32-bit float; video.sink writes 8-bit images");
  }
  cv::Mat view = to_mat(image);
  cv::Mat converted;
  switch (image.channels) {
    case 3:
      return view;
    case 1:
      cv::cvtColor(view, converted, cv::COLOR_GRAY2BGR);
      return converted;
    case 4:
      cv::cvtColor(view, converted, cv::COLOR_BGRA2BGR);
      return converted;
    default:
      throw SinkError("image field '" + field + "' has " + std::to_string(image.channels) +
                      " channels; video.sink writes 1, 3 or 4");
  }
}

// At most kSheetTiles of `held`, spread evenly from the first to the last.
template <class T>
std::vector<T> spread_over(const std::vector<T>& held) {
  const std::size_t n = held.size();
  std::vector<T> chosen;
  for (std::size_t i = 0; i < std::min(n, kSheetTiles); ++i) {
    chosen.push_back(held[n <= kSheetTiles ? i
                                           : static_cast<std::size_t>(std::lround(
                                                 static_cast<double>((n - 1) * i) /
                                                 static_cast<double>(kSheetTiles - 1)))]);
  }
  return chosen;
}

std::optional<double> packet_fps(const Packet& packet) {
  const Value* value = packet.find("fps");
  if (value == nullptr) return std::nullopt;
  if (const auto* number = std::get_if<double>(value)) return *number;
  if (const auto* integer = std::get_if<std::int64_t>(value)) return static_cast<double>(*integer);
  if (const auto* scalars = std::get_if<Scalars>(value); scalars != nullptr && !scalars->empty()) {
    return scalars->front();
  }
  return std::nullopt;
}

// correction_note of the packet's gaze.estimate fields.
std::string note_of(const Packet& packet) {
  std::optional<double> strength;
  std::string reason;
  if (const Value* value = packet.find("gaze_strength")) {
    if (const auto* number = std::get_if<double>(value)) strength = *number;
  }
  if (const Value* value = packet.find("gaze_reason")) {
    if (const auto* text = std::get_if<std::string>(value)) reason = *text;
  }
  return correction_note(strength, reason);
}

// White text with a dark outline, readable on any picture.
void label(cv::Mat& image, const std::string& text, cv::Point at, double scale) {
  cv::putText(image, text, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 3);
  cv::putText(image, text, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255, 255, 255), 1);
}

Points points_field(const Packet& packet, std::string_view name) {
  const Value* value = packet.find(name);
  const auto* points = value != nullptr ? std::get_if<Points>(value) : nullptr;
  return points != nullptr ? *points : Points{};
}

void draw_eyes(cv::Mat& tile, const Points& landmarks, const Points& iris, double scale,
               double offset_x) {
  const auto at = [&](const Point& p) {
    return cv::Point(static_cast<int>(std::lround((p.x + offset_x) * scale)),
                     static_cast<int>(std::lround(p.y * scale)));
  };
  const int dot = std::max(1, static_cast<int>(std::lround(2 * scale)));
  // 68 points per face, dlib order: 36-41 the subject's right eye, 42-47 the left.
  const std::size_t faces = landmarks.size() / 68;
  for (std::size_t face = 0; face < faces; ++face) {
    for (std::size_t k = 36; k <= 47; ++k) {
      cv::circle(tile, at(landmarks[face * 68 + k]), dot, kLandmarkColor, cv::FILLED, cv::LINE_8);
    }
  }
  const int ring = std::max(2, static_cast<int>(std::lround(3 * scale)));
  for (const Point& p : iris) cv::circle(tile, at(p), ring, kIrisColor, 1, cv::LINE_8);
}

// `text` with every "{stream}" replaced by `stream`.
std::string for_stream(std::string text, std::uint32_t stream) {
  static constexpr std::string_view kKey = "{stream}";
  const std::string number = std::to_string(stream);
  for (std::size_t at = text.find(kKey); at != std::string::npos; at = text.find(kKey, at)) {
    text.replace(at, kKey.size(), number);
    at += number.size();
  }
  return text;
}

// The URL FFmpeg opens. OpenCV picks the container from the name's extension, taken after its
// last '.', options included; udp and tcp ignore a URL's path and options they do not know, so
// one ending in ".ts" selects MPEG-TS.
std::string muxer_url(const std::string& path) {
  const std::size_t authority = path.find("://") + 3;
  const std::size_t query = path.find('?', authority);
  if (query == std::string::npos) return path.substr(0, path.find('/', authority)) + "/stream.ts";
  return path + "&container=.ts";
}

}  // namespace

std::string correction_note(const std::optional<double>& strength, const std::string& reason) {
  if (!strength || *strength >= 0.995) return "";
  std::string why = reason.empty() || reason == "ok" ? "fading in" : reason;
  std::replace(why.begin(), why.end(), '_', ' ');
  if (*strength < 0.005) return "left alone (" + why + ")";
  return std::to_string(std::lround(*strength * 100)) + "% (" + why + ")";
}

bool is_stream_output(const std::string& path) {
  return path.starts_with("udp://") || path.starts_with("tcp://");
}

void check_sink_options(const VideoSinkOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) {
    throw ParamError(
        "path",
        "video.sink: 'path' is empty; give an .mp4, .avi or .mkv file, a folder ending in '/' "
        "for numbered PNGs, or a udp:// or tcp:// URL");
  }
  if (options.field.empty()) throw ParamError("field", "video.sink: 'field' is empty");
  const bool per_stream = path.find("{stream}") != std::string::npos;
  for (const auto& [key, other] : {std::pair{"contact_sheet", &options.contact_sheet},
                                   std::pair{"eye_strip", &options.eye_strip}}) {
    if (!other->empty() && per_stream != (other->find("{stream}") != std::string::npos)) {
      throw ParamError(key, "video.sink: '" + *other + "' and the path '" + path +
                                "' must both hold {stream} (one output per stream) or neither");
    }
  }
  const bool to_network = is_stream_output(path);
  if (path.back() == '/') {
    // Numbered PNGs: no codec, no preset.
  } else if (path.find("://") != std::string::npos && !to_network) {
    throw ParamError("path", "video.sink: cannot write to '" + path +
                                 "'; network outputs are udp://host:port or tcp://host:port "
                                 "(MPEG-TS); to publish over RTSP or RTMP, relay one with ffmpeg");
  } else {
    const std::string extension = lower(fs::path(path).extension().string());
    if (!to_network && extension != ".mp4" && extension != ".m4v" && extension != ".mov" &&
        extension != ".avi" && extension != ".mkv") {
      throw ParamError("path", "video.sink: output '" + path + "': " +
                                   (extension.empty() ? std::string("no file extension")
                                                      : "'" + extension + "' is not written") +
                                   "; use .mp4, .m4v, .mov, .avi or .mkv, end the path with "
                                   "'/' to write numbered PNGs, or give a udp:// or tcp:// URL");
    }
    if (!options.codec.empty() && options.codec.size() != 4) {
      throw ParamError("codec",
                       "param 'codec' must be a 4-letter FourCC such as mp4v, avc1, MJPG or "
                       "FFV1; got '" +
                           options.codec + "'");
    }
    const std::vector<std::string>& presets = H264Writer::presets();
    if (std::find(presets.begin(), presets.end(), options.preset) == presets.end()) {
      throw ParamError("preset", "param 'preset' must be one of x264's presets; got '" +
                                     options.preset + "'" +
                                     detail::unknown_hint(options.preset, presets, "presets"));
    }
  }
  if (!options.contact_sheet.empty()) {
    const std::string extension = lower(fs::path(options.contact_sheet).extension().string());
    if (extension != ".png" && extension != ".jpg" && extension != ".jpeg") {
      throw ParamError("contact_sheet", "video.sink: 'contact_sheet' '" + options.contact_sheet +
                                            "' must end in .png (or .jpg)");
    }
  }
  if (!options.eye_strip.empty()) {
    if (options.side_by_side.empty()) {
      throw ParamError("eye_strip",
                       "video.sink: 'eye_strip' shows the eyes before and after; it needs "
                       "'side_by_side' (the input image field, e.g. input_frame)");
    }
    const std::string extension = lower(fs::path(options.eye_strip).extension().string());
    if (extension != ".png" && extension != ".jpg" && extension != ".jpeg") {
      throw ParamError("eye_strip", "video.sink: 'eye_strip' '" + options.eye_strip +
                                        "' must end in .png (or .jpg)");
    }
  }
  if (options.eye_inset && options.side_by_side.empty()) {
    throw ParamError("eye_inset",
                     "video.sink: 'eye_inset' enlarges the eyes before and after; it needs "
                     "'side_by_side' (the input image field, e.g. input_frame)");
  }
}

VideoSink::VideoSink(VideoSinkOptions options) : options_(std::move(options)) {
  check_sink_options(options_);
  const std::string& path = options_.path;
  per_stream_ = path.find("{stream}") != std::string::npos;
  const std::string first = for_stream(path, 0);  // what is checked now, for any stream
  to_folder_ = path.back() == '/';
  to_network_ = is_stream_output(path);
  if (to_folder_) {
    std::error_code error;
    const bool existed = fs::exists(first, error);
    fs::create_directories(first, error);
    if (error || !fs::is_directory(first)) {
      throw SinkError("video.sink: cannot create the output folder '" + first +
                      "': " + (error ? error.message() : std::string("not a folder")));
    }
    if (per_stream_ && !existed) fs::remove(first, error);  // made again if stream 0 comes
  } else {
    if (options_.codec.empty()) options_.codec = to_network_ ? "mp4v" : "avc1";
    const std::string& c = options_.codec;
    fourcc_ = cv::VideoWriter::fourcc(c[0], c[1], c[2], c[3]);
    if (!to_network_) check_writable(first, "output video");
  }
  if (!options_.contact_sheet.empty()) {
    check_writable(for_stream(options_.contact_sheet, 0), "contact sheet");
  }
  if (!options_.eye_strip.empty()) check_writable(for_stream(options_.eye_strip, 0), "eye strip");
  if (options_.expected_frames > 0) {
    const auto last = static_cast<double>(options_.expected_frames - 1);
    for (std::size_t i = 0; i < kSheetTiles; ++i) {
      const auto seq = static_cast<std::uint64_t>(
          std::llround(last * static_cast<double>(i) / static_cast<double>(kSheetTiles - 1)));
      if (sheet_targets_.empty() || sheet_targets_.back() != seq) sheet_targets_.push_back(seq);
    }
  }
}

VideoSink::~VideoSink() {
  std::lock_guard lock(mutex_);
  if (outputs_.empty()) {
    spdlog::warn("video.sink: no frame reached '{}'; nothing was written", options_.path);
  }
  for (auto& [stream, output] : outputs_) close(output);
}

void VideoSink::close(Output& output) {
  // Destructors must not throw: failures here can only be logged.
  try {
    bool incomplete = false;
    if (output.writer.isOpened()) output.writer.release();
    if (output.h264) {
      std::string error;
      try {
        output.h264->finish();
      } catch (const std::exception& failed) {
        error = failed.what();
      }
      if (!output.h264->write_error().empty()) error = output.h264->write_error();
      output.h264.reset();
      if (!error.empty()) {
        // An H.264 file whose writing failed part-way has no index (or a wrong one): no player
        // opens it. It is not left where the finished video is expected.
        std::error_code ignored;
        fs::remove(output.path, ignored);
        spdlog::error(
            "video.sink: '{}' could not be written to the end ({}); the incomplete "
            "file was removed: make room on its disk, or write it elsewhere",
            output.path, error);
        incomplete = true;
      }
    }
    if (incomplete) {
      // said above
    } else if (output.written == 0) {
      spdlog::warn("video.sink: no frame reached '{}'; nothing was written", output.path);
    } else {
      spdlog::info("video.sink: wrote {} frames of {}x{} at {} fps to '{}'", output.written,
                   output.size->width, output.size->height, output.written_fps, output.path);
    }
    if (output.written > 0 && !incomplete) add_audio(output);
    if (!output.contact_sheet.empty()) write_contact_sheet(output);
    if (!output.eye_strip.empty()) write_eye_strip(output);
  } catch (const std::exception& error) {
    spdlog::error("video.sink '{}': closing failed: {}", output.path, error.what());
  }
}

VideoSink::Output& VideoSink::output_for(std::uint32_t stream) {
  if (const auto found = outputs_.find(stream); found != outputs_.end()) return found->second;
  if (!per_stream_ && !outputs_.empty()) {
    throw SinkError("video.sink '" + options_.path + "' writes one stream: got stream " +
                    std::to_string(stream) + " after stream " +
                    std::to_string(outputs_.begin()->first) +
                    "; put {stream} in the path (one output per stream) or give each stream its "
                    "own sink");
  }
  Output& output = outputs_[stream];
  output.path = for_stream(options_.path, stream);
  output.contact_sheet = for_stream(options_.contact_sheet, stream);
  output.eye_strip = for_stream(options_.eye_strip, stream);
  if (to_folder_) {
    std::error_code error;
    fs::create_directories(output.path, error);
    if (error) {
      output.open_error =
          "video.sink: cannot create the output folder '" + output.path + "': " + error.message();
    }
  }
  return output;
}

void VideoSink::process(Packet packet, std::vector<Packet>& /*out*/) {
  std::lock_guard lock(mutex_);  // the encoder, and frame order, admit one writer at a time
  Output& output = output_for(packet.stream);
  try {
    write(output, packet);
  } catch (const SinkError&) {
    throw;
  } catch (const std::exception& error) {
    throw SinkError("video.sink '" + output.path + "': " + error.what());
  }
}

namespace {
// How wide `image` is at `rows` rows, its aspect ratio kept.
int width_at(const cv::Mat& image, int rows) {
  return std::max(1, static_cast<int>(std::lround(image.cols * static_cast<double>(rows) / image.rows)));
}
}  // namespace

cv::Mat VideoSink::compose_still(const cv::Mat& right, const cv::Mat* other) {
  if (other == nullptr) return right;
  cv::Mat left = *other;
  if (left.rows != right.rows) {
    // Same height is all hconcat needs; keep the other image's aspect ratio.
    cv::Mat resized;
    cv::resize(left, resized, cv::Size(width_at(left, right.rows), right.rows), 0, 0,
               cv::INTER_AREA);
    left = resized;
  }
  cv::Mat joined;
  cv::hconcat(left, right, joined);
  return joined;
}

cv::Mat VideoSink::shrink(const cv::Mat& image, cv::Size size) {
  // Linear is 5 times faster than area averaging at factors like 0.75 and as good from 0.5 up.
  cv::Mat out;
  cv::resize(image, out, size, 0, 0,
             2 * size.width >= image.cols ? cv::INTER_LINEAR : cv::INTER_AREA);
  return out;
}

cv::Mat VideoSink::compose(Output& output, const Image& frame, const Image* other,
                           const Points& landmarks, const std::string& note) {
  const cv::Mat after = bgr8(frame, options_.field);
  const cv::Mat before = other != nullptr ? bgr8(*other, options_.side_by_side) : cv::Mat();
  // Frames wider than max_width are scaled down as they are put together (not after: the
  // encoder's and the copies' work shrinks with them), `before` straight to `after`'s scaled
  // height; the eye inset is enlarged from the frames at full size.
  const int before_cols = other != nullptr ? width_at(before, after.rows) : 0;
  const int width = after.cols + before_cols;
  cv::Mat joined;
  if (options_.max_width > 0 && width > options_.max_width) {
    const double scale = static_cast<double>(options_.max_width) / width;
    const auto even = [&](int pixels) {  // H.264 needs even sizes
      return 2 * std::max(1, static_cast<int>(std::lround(pixels * scale / 2)));
    };
    const cv::Mat right = shrink(after, {even(after.cols), even(after.rows)});
    if (other == nullptr) return right;
    const cv::Mat left = shrink(before, {even(before_cols), right.rows});
    cv::hconcat(left, right, joined);
  } else {
    if (other == nullptr) return after;
    joined = compose_still(after, &before);
  }
  if (!options_.eye_inset) return joined;
  // Below the pair, the eyes of each enlarged to half the width: the box follows the face, and
  // stays where it was on frames without one. Even sizes, which H.264 needs.
  std::optional<cv::Rect2f>& box = output.inset_box;
  if (const auto found = eyes_box(landmarks, after.size(), kEyesAspect)) box = found;
  if (!box) {
    box = cv::Rect2f(0, 0, static_cast<float>(after.cols),
                     static_cast<float>(after.cols) / kEyesAspect);
  }
  const int half = joined.cols / 2;
  const int height = 2 * std::max(1, static_cast<int>(std::lround(half / kEyesAspect / 2)));
  cv::Mat band;
  cv::hconcat(enlarge(before, *box, {half, height}),
              enlarge(after, *box, {joined.cols - half, height}), band);
  // Under the corrected eyes, why they were not fully corrected; as large on a wide band as on
  // a 360p pair's.
  if (!note.empty()) {
    const double scale = 0.5 * std::max(1.0, half / 480.0);
    label(band, note, {half + static_cast<int>(12 * scale), static_cast<int>(36 * scale)}, scale);
  }
  cv::Mat out;
  cv::vconcat(joined, band, out);
  return out;
}

void VideoSink::open_writer(Output& output, const Packet& packet, cv::Size size) {
  output.written_fps = options_.fps;
  if (output.written_fps <= 0) output.written_fps = packet_fps(packet).value_or(0);
  if (!(output.written_fps > 0 && std::isfinite(output.written_fps))) {
    output.written_fps = kDefaultFps;
  }
  if (to_folder_) return;
  if (!to_network_ && options_.codec == "avc1") {
    try {
      output.h264 = std::make_unique<H264Writer>(output.path, size, output.written_fps,
                                                 options_.preset, kH264Crf);
    } catch (const std::runtime_error& error) {
      output.open_error = error.what();
      throw SinkError(*output.open_error);
    }
    return;
  }
  // FFmpeg explicitly: the container follows the extension, and other backends (GStreamer)
  // accept other FourCCs with different results on other machines.
  const std::string target = to_network_ ? muxer_url(output.path) : output.path;
  if (!output.writer.open(target, cv::CAP_FFMPEG, fourcc_, output.written_fps, size, true)) {
    output.open_error =
        "video.sink: cannot open '" + output.path + "' for writing " + std::to_string(size.width) +
        "x" + std::to_string(size.height) + " at " + std::to_string(output.written_fps) +
        " fps with codec '" + options_.codec + "'; " +
        (to_network_ ? std::string("check the address, and for tcp:// that a player listens "
                                   "there (or add ?listen to wait for one)")
                     : std::string("try codec mp4v (.mp4), MJPG (.avi) or FFV1 (.mkv)"));
    throw SinkError(*output.open_error);
  }
}

void VideoSink::note_media(Output& output, const Packet& packet) const {
  if (!options_.audio || to_folder_ || to_network_ || !output.sound_matches) return;
  const Value* value = packet.find("media");
  const auto* media = value != nullptr ? std::get_if<std::string>(value) : nullptr;
  if (output.written == 0) {
    if (media != nullptr) output.media = *media;
    // Written at another rate than the input's (`fps` set here), the frames no longer keep
    // the sound's time.
    const std::optional<double> input_fps = packet_fps(packet);
    if (options_.fps > 0 && input_fps &&
        std::abs(*input_fps - options_.fps) > 1e-3 * options_.fps) {
      output.sound_matches = false;
    }
  } else if (media == nullptr || *media != output.media) {
    output.sound_matches = false;  // another file
  } else if (keeps_times(output)) {
    // Each frame at its own time: a frame left out leaves a gap, and a varying rate stays.
  } else if (!output.last_seq || packet.seq != *output.last_seq + 1) {
    output.sound_matches = false;  // frames left out: one per 1/fps, the sound would drift
  } else if (const double due_ns = static_cast<double>(output.written) * 1e9 / output.written_fps;
             std::abs(static_cast<double>(packet.time_ns - output.first_ns) - due_ns) >
             0.5e9 / output.written_fps) {
    // The input's frames do not keep its rate (a variable frame rate, as a phone records):
    // written one per 1/fps, they leave its time, and the sound would drift.
    output.sound_matches = false;
    output.varying_rate = true;
  }
  output.last_ns = packet.time_ns;
}

void VideoSink::add_audio(const Output& output) const {
  if (!options_.audio || to_folder_ || to_network_ || output.media.empty()) return;
  if (output.varying_rate) {
    spdlog::warn(
        "video.sink '{}': the sound of '{}' is left out: its frame rate varies, and codec "
        "'{}' writes the frames at a constant {:.4g} fps, so the sound would drift (write H.264, "
        "the default codec, which keeps each frame's time, or make a copy at a constant rate "
        "first: ffmpeg -i IN -fps_mode cfr -r FPS OUT)",
        output.path, output.media, options_.codec, output.written_fps);
    return;
  }
  if (!output.sound_matches) {
    spdlog::warn(
        "video.sink '{}': the sound of '{}' is left out: the frames written are not all "
        "of its frames from the first to the last at its rate (some were dropped, came "
        "from another input, or 'fps' set another rate), so it would drift",
        output.path, output.media);
    return;
  }
  const double from_s = static_cast<double>(output.first_ns) / 1e9;
  const double to_s = static_cast<double>(output.last_ns) / 1e9 + 1 / output.written_fps;
  try {
    const std::string left_out = copy_audio(output.path, output.media, from_s, to_s);
    if (left_out.empty()) {
      spdlog::info("video.sink: '{}' has the sound of '{}'", output.path, output.media);
    } else if (left_out != "no audio track") {
      spdlog::warn("video.sink '{}': the sound of '{}' is left out: {}", output.path, output.media,
                   left_out);
    }
  } catch (const std::exception& error) {
    spdlog::warn("video.sink '{}': the sound of '{}' is left out: {}", output.path, output.media,
                 error.what());
  }
}

void VideoSink::write(Output& output, const Packet& packet) {
  if (output.open_error) throw SinkError(*output.open_error);
  if (output.last_seq && packet.seq < *output.last_seq && !output.warned_order) {
    output.warned_order = true;
    spdlog::warn(
        "video.sink '{}': frames arrive out of order (seq {} after {}); set "
        "`ordered: true` on this stage",
        output.path, packet.seq, *output.last_seq);
  }
  const auto& frame = packet.get<Image>(options_.field);
  const Image* other =
      options_.side_by_side.empty() ? nullptr : &packet.get<Image>(options_.side_by_side);
  const cv::Mat pixels = compose(output, frame, other, points_field(packet, "landmarks"),
                                 options_.eye_inset ? note_of(packet) : std::string());
  if (!output.size) {
    open_writer(output, packet, pixels.size());
    output.size = pixels.size();
  } else if (pixels.size() != *output.size) {
    throw SinkError("video.sink '" + output.path + "': frame seq " + std::to_string(packet.seq) +
                    " of stream " + std::to_string(packet.stream) + " is " +
                    std::to_string(pixels.cols) + "x" + std::to_string(pixels.rows) +
                    " but the video is " + std::to_string(output.size->width) + "x" +
                    std::to_string(output.size->height) +
                    "; a video keeps one size (the input changed size: scale its frames to one "
                    "size before this stage, or restart the run)");
  }
  if (output.written == 0) output.first_ns = packet.time_ns;
  note_media(output, packet);
  output.last_seq = packet.seq;
  if (to_folder_) {
    char name[32];
    std::snprintf(name, sizeof name, "%06llu.png", static_cast<unsigned long long>(packet.seq));
    const fs::path file = fs::path(output.path) / name;
    if (!cv::imwrite(file.string(), pixels)) {
      throw SinkError("video.sink: cannot write '" + file.string() + "' (disk full?)");
    }
  } else if (output.h264) {
    output.h264->write(
        pixels, keeps_times(output)
                    ? packet.time_ns - output.first_ns
                    : static_cast<std::int64_t>(std::llround(static_cast<double>(output.written) *
                                                             1e9 / output.written_fps)));
  } else {
    output.writer.write(pixels);
  }
  ++output.written;
  keep_for_sheet(output, packet);
}

void VideoSink::keep_for_sheet(Output& output, const Packet& packet) {
  if (output.contact_sheet.empty() && output.eye_strip.empty()) return;
  if (!sheet_targets_.empty()) {
    if (!std::binary_search(sheet_targets_.begin(), sheet_targets_.end(), packet.seq)) return;
  } else if (packet.seq % output.sheet_stride != 0) {
    return;
  }
  Kept kept{
      .seq = packet.seq,
      .frame = packet.get<Image>(options_.field),
      .other = options_.side_by_side.empty() ? Image{} : packet.get<Image>(options_.side_by_side),
      .landmarks = points_field(packet, "landmarks"),
      .iris = points_field(packet, "iris"),
      .note = note_of(packet)};
  output.kept.push_back(std::move(kept));
  if (!sheet_targets_.empty()) return;
  // Length unknown: keep every stride-th frame and, when too many are held, drop every other
  // one and double the stride. What is kept stays evenly spread over everything seen so far.
  while (output.kept.size() > kSheetKeepMax) {
    output.sheet_stride *= 2;
    std::erase_if(output.kept, [&](const Kept& k) { return k.seq % output.sheet_stride != 0; });
  }
}

void VideoSink::write_contact_sheet(const Output& output) const {
  const std::vector<Kept>& held = output.kept;
  if (held.empty()) {
    spdlog::warn("video.sink: no frames for the contact sheet '{}'", output.contact_sheet);
    return;
  }
  std::vector<const Kept*> all;
  for (const Kept& kept : held) all.push_back(&kept);

  std::vector<cv::Mat> tiles;
  for (const Kept* kept : spread_over(all)) {
    const bool has_other = kept->other.width > 0;
    const cv::Mat before = has_other ? bgr8(kept->other, options_.side_by_side) : cv::Mat();
    const cv::Mat composite =
        compose_still(bgr8(kept->frame, options_.field), has_other ? &before : nullptr);
    const double scale = std::min(1.0, static_cast<double>(kMaxTileWidth) / composite.cols);
    cv::Mat tile;
    // A copy in both cases: drawing must never touch the packets' shared pixels.
    if (scale < 1) {
      cv::resize(composite, tile, cv::Size(), scale, scale, cv::INTER_AREA);
    } else {
      tile = composite.clone();
    }
    if (options_.markers) {  // off by default: they hide the eyes a viewer wants to judge
      const double frame_x = composite.cols - kept->frame.width;  // `field` is the right part
      draw_eyes(tile, kept->landmarks, kept->iris, scale, frame_x);
      if (has_other && kept->other.width == kept->frame.width &&
          kept->other.height == kept->frame.height) {
        draw_eyes(tile, kept->landmarks, kept->iris, scale, 0);
      }
    }
    label(tile, "#" + std::to_string(kept->seq), {6, 20}, 0.55);
    tiles.push_back(tile);
  }

  const int tile_w = tiles.front().cols;
  const int tile_h = tiles.front().rows;
  const auto columns = static_cast<int>(std::min(tiles.size(), kSheetColumns));
  const auto rows = static_cast<int>((tiles.size() + kSheetColumns - 1) / kSheetColumns);
  cv::Mat sheet(rows * tile_h, columns * tile_w, CV_8UC3, cv::Scalar(0, 0, 0));
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const int col = static_cast<int>(i % kSheetColumns);
    const int row = static_cast<int>(i / kSheetColumns);
    tiles[i].copyTo(sheet(cv::Rect(col * tile_w, row * tile_h, tile_w, tile_h)));
  }
  if (!cv::imwrite(output.contact_sheet, sheet)) {
    spdlog::error("video.sink: cannot write the contact sheet '{}'", output.contact_sheet);
    return;
  }
  spdlog::info("video.sink: contact sheet of {} frames written to '{}'", tiles.size(),
               output.contact_sheet);
}

void VideoSink::write_eye_strip(const Output& output) const {
  // The frames with a face (no face, nothing to show), with their eyes' box, spread over the
  // video.
  std::vector<std::pair<const Kept*, cv::Rect2f>> faces;
  for (const Kept& kept : output.kept) {
    if (kept.other.width == 0 || kept.other.width != kept.frame.width ||
        kept.other.height != kept.frame.height) {
      continue;
    }
    const auto box = eyes_box(kept.landmarks, {kept.frame.width, kept.frame.height}, kEyesAspect);
    if (box) faces.emplace_back(&kept, *box);
  }
  std::vector<cv::Mat> tiles;
  for (const auto& [kept, box] : spread_over(faces)) {
    const cv::Mat after = bgr8(kept->frame, options_.field);
    const cv::Mat before = bgr8(kept->other, options_.side_by_side);
    const cv::Size size(kStripTileWidth, static_cast<int>(std::lround(kStripTileWidth / kEyesAspect)));
    cv::Mat top = enlarge(before, box, size);
    cv::Mat bottom = enlarge(after, box, size);
    label(top, "#" + std::to_string(kept->seq) + " before", {6, 18}, 0.5);
    label(bottom, kept->note.empty() ? "after" : "after: " + kept->note, {6, 18}, 0.5);
    cv::Mat tile;
    cv::vconcat(top, bottom, tile);
    cv::copyMakeBorder(tile, tile, 2, 2, 2, 2, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
    tiles.push_back(tile);
  }
  if (tiles.empty()) {
    spdlog::warn("video.sink: no frame with a face for the eye strip '{}'", output.eye_strip);
    return;
  }
  const auto columns = static_cast<int>(std::min(tiles.size(), kSheetColumns));
  const auto rows = static_cast<int>((tiles.size() + kSheetColumns - 1) / kSheetColumns);
  const int w = tiles.front().cols, h = tiles.front().rows;
  cv::Mat strip(rows * h, columns * w, CV_8UC3, cv::Scalar(0, 0, 0));
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    tiles[i].copyTo(strip(cv::Rect(static_cast<int>(i % kSheetColumns) * w,
                                   static_cast<int>(i / kSheetColumns) * h, w, h)));
  }
  if (!cv::imwrite(output.eye_strip, strip)) {
    spdlog::error("video.sink: cannot write the eye strip '{}'", output.eye_strip);
    return;
  }
  spdlog::info("video.sink: eye strip of {} frames written to '{}'", tiles.size(), output.eye_strip);
}

}  // namespace micromodels::vision
