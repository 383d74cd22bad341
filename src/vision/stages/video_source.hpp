// `video.source`: frames from video files, images, folders of images, cameras or streams.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "micromodels/stage.hpp"
#include "video_input.hpp"

namespace micromodels::vision {

/// The inputs a `path` lists: one, or several separated by commas (optionally in brackets:
/// "[a.mp4, rtsp://cam/1]"), blanks around each trimmed. A file or folder that exists under
/// the whole `path` is one input, commas in its name or not.
[[nodiscard]] std::vector<std::string> split_video_inputs(const std::string& path);

struct VideoSourceOptions {
  std::string path;               // one input, or several separated by commas
  std::uint32_t stream = 0;       // of the first input; the i-th input's is stream + i
  std::uint64_t max_frames = 0;   // per input; 0: all
  std::uint64_t start = 0;        // frames (or images) skipped before the first packet
  double fps = 0;                 // for images and inputs that report no rate; 0: 25
  bool realtime = false;          // frame k no earlier than k / fps after the start
  double reconnect_s = 30;        // live inputs: how long to retry after a drop; 0: never
};

/// Checks what `options` says without opening anything (the VideoSource constructor calls it
/// first); throws ParamError naming the option's key.
void check_source_options(const VideoSourceOptions& options);

/// Packets with field `frame` (Image, 8-bit BGR; gray and BGRA inputs are converted) and `fps`
/// (double); per input, its own `stream`, `seq` from 0 and `time_ns` (a file's media time, a
/// live input's time since it opened); on a reader thread, `capture_ns` when the frame was
/// delivered (after pacing), so that its age counts the time it waited here. Everything that can go wrong with an input at start (missing,
/// unreachable, undecodable, `start` past the end) is found in the constructor, which throws
/// std::runtime_error naming the path.
///
/// Files and images are read on the caller's thread, inputs in turn. A live input (camera or
/// stream URL) or `realtime` gets a reader thread per input, started by the first `next`, so
/// that a stalled input does not hold up the others; each keeps at most two frames ready, and
/// waits while they are not taken (in live mode the engine takes them at once).
///
///   VideoSource source({.path = "franck.mp4", .max_frames = 100});
///   std::vector<Packet> out;
///   while (source.next(out)) {}
class VideoSource final : public Source {
 public:
  explicit VideoSource(VideoSourceOptions options);
  ~VideoSource() override;
  VideoSource(const VideoSource&) = delete;
  VideoSource& operator=(const VideoSource&) = delete;

  bool next(std::vector<Packet>& out) override;
  [[nodiscard]] std::optional<std::uint64_t> expected_count() const override { return expected_; }
  /// The first input's frame rate.
  [[nodiscard]] double fps() const noexcept;
  [[nodiscard]] std::size_t inputs() const noexcept { return lanes_.size(); }
  /// Times the live inputs came back after they dropped, summed. Each attempt is counted as
  /// the event "reconnects", and each time an input froze as "frozen" (Source::count).
  [[nodiscard]] std::uint64_t reconnected() const;

 private:
  // One input and what it has ready.
  struct Lane {
    std::unique_ptr<VideoInput> input;
    std::uint32_t stream = 0;
    std::uint64_t emitted = 0;
    std::uint64_t read = 0;
    std::deque<VideoFrame> ready;    // read ahead: one frame, or up to two on a reader thread
    bool ended = false;              // nothing more will be read
    std::exception_ptr read_error;   // from reading ahead; rethrown by the following next()
  };

  bool next_in_turn(std::vector<Packet>& out);
  bool next_from_readers(std::vector<Packet>& out);
  void read_ahead(Lane& lane);
  void run_reader(Lane& lane, const std::stop_token& stop);
  void emit(Lane& lane, VideoFrame frame, std::vector<Packet>& out);

  VideoSourceOptions options_;
  std::vector<Lane> lanes_;
  std::optional<std::uint64_t> expected_;
  std::size_t turn_ = 0;  // the lane served first by the next call
  bool threaded_ = false;
  std::mutex mutex_;                      // lanes' `ready` and `ended` when threaded
  std::condition_variable_any changed_;   // a frame ready, taken, or a lane ended
  std::vector<std::jthread> readers_;     // last: stopped and joined first; started by next()
};

}  // namespace micromodels::vision
