#include "video_source.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>

#include "micromodels/params.hpp"

#include "image_mat.hpp"

namespace micromodels::vision {

namespace {

constexpr std::size_t kReadyPerReader = 2;
// How long next() waits for a reader before it returns empty-handed, so that the engine can
// stop a run whose inputs are all stalled.
constexpr auto kLongestWait = std::chrono::milliseconds(100);

std::string trim(const std::string& text) {
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

}  // namespace

std::vector<std::string> split_video_inputs(const std::string& path) {
  std::string text = trim(path);
  // A file or folder whose name holds a comma ("take 1, final.mp4") is one input.
  if (std::error_code ignored;
      text.find(',') != std::string::npos && std::filesystem::exists(text, ignored)) {
    return {text};
  }
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  std::vector<std::string> inputs;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    inputs.push_back(trim(text.substr(start, comma == std::string::npos ? comma : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (inputs.size() > 1 &&
      std::any_of(inputs.begin(), inputs.end(), [](const std::string& s) { return s.empty(); })) {
    throw ParamError("path", "video.source: 'path' = '" + path +
                                 "' lists an empty input; separate the inputs with single commas");
  }
  return inputs;
}

void check_source_options(const VideoSourceOptions& options) {
  const std::vector<std::string> paths = split_video_inputs(options.path);
  if (paths.size() == 1 && paths[0].empty()) {
    throw ParamError("path",
                     "video.source: 'path' is empty; give a video file, an image, a folder of "
                     "images, a camera (\"0\", \"/dev/video0\") or a stream URL");
  }
  if (static_cast<std::uint64_t>(options.stream) + paths.size() - 1 > UINT32_MAX) {
    throw ParamError("stream", "video.source: 'stream' too large for " +
                                   std::to_string(paths.size()) + " inputs");
  }
  if (options.start > 0) {
    for (const std::string& path : paths) {
      const VideoInputKind kind = classify_video_input(path);
      if (is_live(kind)) {
        throw ParamError(
            "start",
            "video.source: 'start' = " + std::to_string(options.start) + " with " +
                (kind == VideoInputKind::camera ? "camera " + path : "stream '" + path + "'") +
                ", which is live and cannot seek; remove 'start'");
      }
    }
  }
}

VideoSource::VideoSource(VideoSourceOptions options) : options_(std::move(options)) {
  check_source_options(options_);
  const std::vector<std::string> paths = split_video_inputs(options_.path);
  lanes_.resize(paths.size());
  expected_ = 0;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    Lane& lane = lanes_[i];
    lane.input = std::make_unique<VideoInput>(
        VideoInputOptions{.path = paths[i],
                          .start = options_.start,
                          .fps = options_.fps,
                          .reconnect_s = options_.reconnect_s,
                          .count = [this](std::string_view event) { count(event); }});
    lane.stream = options_.stream + static_cast<std::uint32_t>(i);
    threaded_ = threaded_ || options_.realtime || lane.input->live();
    std::optional<std::uint64_t> frames = lane.input->expected_count();
    if (frames && options_.max_frames > 0) frames = std::min(*frames, options_.max_frames);
    if (expected_ && frames) {
      *expected_ += *frames;
    } else {
      expected_.reset();
    }
  }
  if (!threaded_) {
    for (Lane& lane : lanes_) read_ahead(lane);
  }
}

VideoSource::~VideoSource() {
  for (std::jthread& reader : readers_) reader.request_stop();
  readers_.clear();  // joins: a reader inside a read returns within the input's timeout
  for (const Lane& lane : lanes_) {
    if (lane.input->reconnected() > 0) {
      spdlog::info("video.source: {} reconnected {} time(s)", lane.input->describe(),
                   lane.input->reconnected());
    }
  }
}

double VideoSource::fps() const noexcept { return lanes_.front().input->fps(); }

std::uint64_t VideoSource::reconnected() const {
  std::uint64_t total = 0;
  for (const Lane& lane : lanes_) total += lane.input->reconnected();
  return total;
}

void VideoSource::emit(Lane& lane, VideoFrame frame, std::vector<Packet>& out) {
  Packet packet;
  packet.stream = lane.stream;
  packet.seq = lane.emitted++;
  packet.time_ns = frame.time_ns;
  packet.capture_ns = frame.capture_ns;
  packet.set("frame", to_image(frame.pixels));
  packet.set("fps", lane.input->fps());
  // Which file the frame came from, for a sink that puts its sound back (audio_copy.hpp).
  if (lane.input->kind() == VideoInputKind::video_file) packet.set("media", lane.input->path());
  out.push_back(std::move(packet));
}

bool VideoSource::next(std::vector<Packet>& out) {
  return threaded_ ? next_from_readers(out) : next_in_turn(out);
}

// Files on the caller's thread: one frame of the next input in turn that has one.
void VideoSource::read_ahead(Lane& lane) {
  if (options_.max_frames > 0 && lane.read >= options_.max_frames) {
    lane.ended = true;
    return;
  }
  try {
    std::optional<VideoFrame> frame = lane.input->read();
    if (frame) {
      ++lane.read;
      lane.ready.push_back(std::move(*frame));
    } else {
      lane.ended = true;
    }
  } catch (...) {
    // The packet just made is good: deliver it now and report the failure on the next call.
    lane.read_error = std::current_exception();
    lane.ended = true;
  }
}

bool VideoSource::next_in_turn(std::vector<Packet>& out) {
  for (std::size_t k = 0; k < lanes_.size(); ++k) {
    Lane& lane = lanes_[(turn_ + k) % lanes_.size()];
    if (lane.read_error) std::rethrow_exception(std::exchange(lane.read_error, nullptr));
    if (lane.ready.empty()) continue;
    turn_ = (turn_ + k + 1) % lanes_.size();
    emit(lane, std::move(lane.ready.front()), out);
    lane.ready.pop_front();
    read_ahead(lane);
    break;
  }
  return std::any_of(lanes_.begin(), lanes_.end(), [](const Lane& lane) {
    return !lane.ready.empty() || lane.read_error != nullptr;
  });
}

// Live inputs and `realtime`: what the readers have ready, one frame per input at most.
bool VideoSource::next_from_readers(std::vector<Packet>& out) {
  if (readers_.empty()) {
    // Started by the first call, not the constructor: a camera's clock starts when the pipeline
    // asks for frames, not while the models load, which would make the first frames stale.
    for (Lane& lane : lanes_) {
      readers_.emplace_back(
          [this, &lane](const std::stop_token& stop) { run_reader(lane, stop); });
    }
  }
  std::unique_lock lock(mutex_);
  const auto anything = [&] {
    return std::any_of(lanes_.begin(), lanes_.end(),
                       [](const Lane& lane) { return !lane.ready.empty() || lane.ended; });
  };
  changed_.wait_for(lock, kLongestWait, anything);
  for (std::size_t k = 0; k < lanes_.size(); ++k) {
    Lane& lane = lanes_[(turn_ + k) % lanes_.size()];
    if (lane.ready.empty()) continue;
    emit(lane, std::move(lane.ready.front()), out);
    lane.ready.pop_front();
  }
  turn_ = (turn_ + 1) % lanes_.size();
  changed_.notify_all();
  return !std::all_of(lanes_.begin(), lanes_.end(),
                      [](const Lane& lane) { return lane.ended && lane.ready.empty(); });
}

void VideoSource::run_reader(Lane& lane, const std::stop_token& stop) {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / lane.input->fps()));
  Clock::time_point started;  // when frame 0 of this run of frames was delivered
  std::uint64_t k = 0;        // frames since `started`
  while (!stop.stop_requested()) {
    if (options_.max_frames > 0 && lane.read >= options_.max_frames) break;
    std::optional<VideoFrame> frame;
    try {
      frame = lane.input->read(stop);
    } catch (const std::exception& error) {
      // One input's failure ends its stream only; the others go on.
      spdlog::error("video.source: {}: {}; its stream ends", lane.input->describe(),
                    error.what());
    }
    if (!frame) break;
    ++lane.read;
    std::unique_lock lock(mutex_);
    if (options_.realtime) {
      // Frame k no earlier than k intervals after the start; a reader that fell behind does
      // not hurry to catch up (a camera does not deliver the frames it missed): it starts over.
      // The clock starts at the first frame, once it is decoded (opening a file or a stream
      // can take longer than a frame interval).
      const Clock::time_point now = Clock::now();
      if (k == 0) started = now;
      const Clock::time_point due = started + k * interval;
      if (now > due + interval) {
        started = now;
        k = 0;
      } else if (now < due) {
        changed_.wait_until(lock, stop, due, [] { return false; });
        if (stop.stop_requested()) break;
      }
    }
    // Delivered now, as a camera delivers it: the age of the packet counts from here.
    frame->capture_ns = capture_clock_ns();
    if (!changed_.wait(lock, stop, [&] { return lane.ready.size() < kReadyPerReader; })) break;
    lane.ready.push_back(std::move(*frame));
    ++k;
    changed_.notify_all();
  }
  std::lock_guard lock(mutex_);
  lane.ended = true;
  changed_.notify_all();
}

}  // namespace micromodels::vision
