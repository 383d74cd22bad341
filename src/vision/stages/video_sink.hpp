// `video.sink`: writes an image field of each packet to a video file, a folder of PNGs or a
// network stream.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/stage.hpp"

#include "h264_writer.hpp"

namespace micromodels::vision {

/// A network output `video.sink` writes MPEG-TS to: "udp://host:port" or "tcp://host:port",
/// with FFmpeg's options after '?' ("tcp://0.0.0.0:9000?listen" waits for a player).
[[nodiscard]] bool is_stream_output(const std::string& path);

/// How much a frame's eyes were corrected, from gaze.estimate's `gaze_strength` and
/// `gaze_reason`, for the eye strip's and the eye inset's labels: empty when fully corrected (or
/// without a strength), else "left alone (smiling)" or "40% (fading in)".
[[nodiscard]] std::string correction_note(const std::optional<double>& strength,
                                          const std::string& reason);

struct VideoSinkOptions {
  // .mp4 .m4v .mov .avi .mkv, a folder ending in '/' for PNGs, or udp:// or tcp:// (MPEG-TS);
  // "{stream}" in it is replaced by each packet's stream, one output per stream.
  std::string path;
  std::string field = "frame";
  double fps = 0;                     // 0: the packets' `fps` field, else 25
  std::string codec;                  // FourCC; empty: avc1 (H.264) for files, mp4v for streams
  std::string preset = "superfast";   // x264's speed preset for avc1 files
  std::string side_by_side;           // a second image field, written left of `field`
  bool eye_inset = false;             // with side_by_side: enlarged eyes of both, below them
  int max_width = 0;                  // wider frames are written scaled down to this; 0: as made
  std::string contact_sheet;          // PNG written at close: 6 frames spread over the video
                                      // (with several streams, "{stream}" in it too)
  bool markers = false;               // the contact sheet marks the eye landmarks and irises
  std::string eye_strip;              // PNG written at close: enlarged eyes, before over after
  std::uint64_t expected_frames = 0;  // spacing of the contact sheet; 0: unknown
  bool audio = true;  // a video file gets the sound of the file its frames came from ('media')
};

/// Checks what `options` says without touching the disk (the VideoSink constructor calls it,
/// then checks the outputs can be written); throws ParamError naming the option's key.
void check_sink_options(const VideoSinkOptions& options);

/// Writes frames in the order it receives them; run it with `ordered: true` so that order is
/// the stream's. One output per stream when the path holds "{stream}"; otherwise a second
/// stream is refused. Lifecycle: the constructor checks the output can be written, a stream's
/// first packet opens its encoder (its frame gives the size; a frame of another size later is
/// refused), the destructor flushes the files and writes the contact sheets. Thread-safe (one
/// lock around each write), though one consumer is the sane setting. Errors name the output.
///
///   VideoSink sink({.path = "out.mp4", .side_by_side = "input_frame"});
///   std::vector<Packet> none;
///   sink.process(packet, none);   // packet has Image fields "frame" and "input_frame"
class VideoSink final : public Stage {
 public:
  explicit VideoSink(VideoSinkOptions options);
  ~VideoSink() override;
  VideoSink(const VideoSink&) = delete;
  VideoSink& operator=(const VideoSink&) = delete;

  void process(Packet packet, std::vector<Packet>& out) override;

 private:
  // A frame kept for the contact sheet: references to the packet's pixels, never a copy.
  struct Kept {
    std::uint64_t seq = 0;
    Image frame;
    Image other;
    Points landmarks;
    Points iris;
    std::string note;  // correction_note
  };
  // What is written for one stream: its video (or folder) and contact sheet.
  struct Output {
    std::string path;
    std::string contact_sheet;
    std::string eye_strip;
    cv::VideoWriter writer;                // every codec but H.264 to a file, and streams
    std::unique_ptr<H264Writer> h264;      // H.264 (avc1) to a file
    std::optional<cv::Size> size;           // of the written frames, fixed by the first packet
    std::optional<std::string> open_error;  // a failed open fails every later packet the same way
    std::optional<std::uint64_t> last_seq;
    bool warned_order = false;
    std::uint64_t written = 0;
    double written_fps = 0;
    std::uint64_t sheet_stride = 1;  // when expected_frames is unknown: every stride-th seq
    std::vector<Kept> kept;
    std::optional<cv::Rect2f> inset_box;  // the eyes' box of the last frame with a face
    // The first and last frame's times (the packets'). The sound: the file the frames came
    // from, when they all did (video.source's 'media'); without keeps_times, a gap in the seqs
    // (frames dropped) or a varying rate leaves it out.
    std::int64_t first_ns = 0, last_ns = 0;
    std::string media;
    bool sound_matches = true;
    bool varying_rate = false;  // the input's frames do not keep its frame rate
  };

  /// H.264 files are written at each frame's own time (from the first's) unless `fps` sets a
  /// rate; other outputs one frame per 1/fps.
  [[nodiscard]] bool keeps_times(const Output& output) const {
    return output.h264 != nullptr && options_.fps <= 0;
  }
  Output& output_for(std::uint32_t stream);
  void write(Output& output, const Packet& packet);
  void open_writer(Output& output, const Packet& packet, cv::Size size);
  void keep_for_sheet(Output& output, const Packet& packet);
  void close(Output& output);
  void note_media(Output& output, const Packet& packet) const;
  void add_audio(const Output& output) const;
  void write_contact_sheet(const Output& output) const;
  void write_eye_strip(const Output& output) const;
  // `frame`, with `other` on its left and, with eye_inset, both's eyes enlarged below.
  [[nodiscard]] cv::Mat compose(Output& output, const Image& frame, const Image* other,
                                const Points& landmarks, const std::string& note);
  // `right` with `other` (when given) on its left, scaled to `right`'s height.
  [[nodiscard]] static cv::Mat compose_still(const cv::Mat& right, const cv::Mat* other);
  // `image` scaled down to `size`.
  [[nodiscard]] static cv::Mat shrink(const cv::Mat& image, cv::Size size);

  VideoSinkOptions options_;
  bool per_stream_ = false;  // the path holds "{stream}"
  bool to_folder_ = false;
  bool to_network_ = false;
  int fourcc_ = 0;
  std::mutex mutex_;
  std::map<std::uint32_t, Output> outputs_;
  std::vector<std::uint64_t> sheet_targets_;  // seqs to keep, when expected_frames is known
};

}  // namespace micromodels::vision
