// `video.sink`: writes an image field of each packet to a video file or a folder of PNGs.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "micromodels/stage.hpp"

namespace micromodels::vision {

struct VideoSinkOptions {
  std::string path;  // .mp4 .m4v .mov .avi .mkv, or a folder ending in '/' for PNGs
  std::string field = "frame";
  double fps = 0;                     // 0: the packets' `fps` field, else 25
  std::string codec = "avc1";         // FourCC; H.264 plays in browsers and common players
  std::string side_by_side;           // a second image field, written left of `field`
  bool eye_inset = false;             // with side_by_side: enlarged eyes of both, below them
  std::string contact_sheet;          // PNG written at close: 6 frames spread over the video
  bool markers = false;               // the contact sheet marks the eye landmarks and irises
  std::string eye_strip;              // PNG written at close: enlarged eyes, before over after
  std::uint64_t expected_frames = 0;  // spacing of the contact sheet; 0: unknown
};

/// Writes frames in the order it receives them; run it with `ordered: true` so that order is
/// the stream's. Lifecycle: the constructor checks the output can be written, the first packet
/// opens the encoder (its frame gives the size), the destructor flushes the file and writes the
/// contact sheet. Thread-safe (one lock around each write), though one consumer is the sane
/// setting. Errors name the output path.
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
  };

  void write(const Packet& packet);
  void open_writer(const Packet& packet, cv::Size size);
  void keep_for_sheet(const Packet& packet);
  void write_contact_sheet() const;
  void write_eye_strip() const;
  // `frame`, with `other` on its left and, with eye_inset, both's eyes enlarged below.
  [[nodiscard]] cv::Mat compose(const Image& frame, const Image* other, const Points& landmarks);
  // `right` with `other` (when given) on its left, scaled to `right`'s height.
  [[nodiscard]] static cv::Mat compose_still(const cv::Mat& right, const cv::Mat* other);

  VideoSinkOptions options_;
  bool to_folder_ = false;
  int fourcc_ = 0;
  std::mutex mutex_;
  cv::VideoWriter writer_;
  std::optional<cv::Size> size_;           // of the written frames, fixed by the first packet
  std::optional<std::string> open_error_;  // a failed open fails every later packet the same way
  std::optional<std::uint32_t> stream_;
  std::optional<std::uint64_t> last_seq_;
  bool warned_order_ = false;
  std::uint64_t written_ = 0;
  double written_fps_ = 0;
  std::vector<std::uint64_t> sheet_targets_;  // seqs to keep, when expected_frames is known
  std::uint64_t sheet_stride_ = 1;            // otherwise: every stride-th seq, thinned as it goes
  std::vector<Kept> kept_;
  std::optional<cv::Rect2f> inset_box_;  // the eyes' box of the last frame with a face
};

}  // namespace micromodels::vision
