#include "h264_writer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include <opencv2/core.hpp>
#include <spdlog/spdlog.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "av_error.hpp"

namespace micromodels::vision {

namespace {
constexpr int kTicksPerSecond = 90000;  // the frames' times, as MPEG streams count them
}  // namespace

struct H264Writer::Impl {
  std::string path;
  cv::Size size;    // the frames'
  cv::Size coded;   // the video's: `size` rounded up to even sizes
  cv::Mat padded;   // a frame of `coded` size, when it differs
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  AVStream* stream = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  SwsContext* convert = nullptr;
  std::int64_t frame_ticks = 1;  // one frame at the nominal rate, in kTicksPerSecond
  std::int64_t last_pts = -1;
  bool finished = false;
  std::string write_error;  // the first failure to write to the file

  [[noreturn]] void fail(const std::string& what, int code) const {
    throw std::runtime_error("video.sink: H.264 output '" + path + "': " + what + ": " +
                             av_error(code));
  }

  // Hands what the encoder has ready to the file (after a flush: everything it had).
  void drain() {
    while (true) {
      const int got = avcodec_receive_packet(codec, packet);
      if (got == AVERROR(EAGAIN) || got == AVERROR_EOF) return;
      if (got < 0) fail("encoding failed", got);
      packet->duration = frame_ticks;  // the last frame's, which the container cannot infer
      av_packet_rescale_ts(packet, codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      const int written = av_interleaved_write_frame(format, packet);  // takes the packet
      if (written < 0) {
        if (write_error.empty()) write_error = av_error(written);
        fail("cannot write (disk full?)", written);
      }
    }
  }

  ~Impl() {
    sws_freeContext(convert);
    av_packet_free(&packet);
    av_frame_free(&frame);
    avcodec_free_context(&codec);
    if (format != nullptr) {
      if (format->pb != nullptr) avio_closep(&format->pb);
      avformat_free_context(format);
    }
  }
};

H264Writer::H264Writer(const std::string& path, cv::Size size, double fps,
                       const std::string& preset, int crf)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  w.size = size;
  if (size.width <= 0 || size.height <= 0) {
    throw std::runtime_error("video.sink: H.264 output '" + path + "': frames of " +
                             std::to_string(size.width) + "x" + std::to_string(size.height) +
                             " cannot be encoded");
  }
  // 4:2:0 chroma, which players decode, needs even sizes: an odd one gets its last column or
  // row repeated once, so that no pixel of the frame is lost.
  w.coded = cv::Size(size.width + size.width % 2, size.height + size.height % 2);
  if (w.coded != size) {
    spdlog::info("video.sink: H.264 output '{}': frames of {}x{} are written as {}x{}, their last "
                 "{} repeated (H.264 needs even sizes)",
                 path, size.width, size.height, w.coded.width, w.coded.height,
                 size.width % 2 != 0 && size.height % 2 != 0 ? "column and row"
                 : size.width % 2 != 0                       ? "column"
                                                              : "row");
  }
  int code = avformat_alloc_output_context2(&w.format, nullptr, nullptr, path.c_str());
  if (code < 0 || w.format == nullptr) w.fail("no container for this file name", code);
  const AVCodec* encoder = avcodec_find_encoder_by_name("libx264");
  if (encoder == nullptr) {
    throw std::runtime_error("video.sink: H.264 output '" + path +
                             "': FFmpeg here has no libx264 encoder; use codec mp4v");
  }
  w.stream = avformat_new_stream(w.format, nullptr);
  w.codec = avcodec_alloc_context3(encoder);
  w.frame = av_frame_alloc();
  w.packet = av_packet_alloc();
  if (w.stream == nullptr || w.codec == nullptr || w.frame == nullptr || w.packet == nullptr) {
    w.fail("out of memory", AVERROR(ENOMEM));
  }
  const AVRational rate = av_d2q(fps, 100000);
  w.codec->width = w.coded.width;
  w.codec->height = w.coded.height;
  w.codec->pix_fmt = AV_PIX_FMT_YUV420P;  // what browsers and players decode
  w.codec->framerate = rate;
  w.codec->time_base = AVRational{1, kTicksPerSecond};  // fine enough for any frame's own time
  w.frame_ticks = std::max<std::int64_t>(1, std::llround(kTicksPerSecond / fps));
  w.codec->thread_count = 1;  // one consumer, one core: the pipeline's stages are its parallelism
  if ((w.format->oformat->flags & AVFMT_GLOBALHEADER) != 0) {
    w.codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  }
  av_opt_set(w.codec->priv_data, "preset", preset.c_str(), 0);
  av_opt_set_int(w.codec->priv_data, "crf", crf, 0);
  code = avcodec_open2(w.codec, encoder, nullptr);
  if (code < 0) w.fail("cannot open libx264 (preset '" + preset + "')", code);
  code = avcodec_parameters_from_context(w.stream->codecpar, w.codec);
  if (code < 0) w.fail("cannot set the stream's parameters", code);
  w.stream->time_base = w.codec->time_base;
  w.stream->avg_frame_rate = rate;  // what players and readers report as the frame rate
  w.stream->r_frame_rate = rate;
  w.frame->format = w.codec->pix_fmt;
  w.frame->width = w.coded.width;
  w.frame->height = w.coded.height;
  code = av_frame_get_buffer(w.frame, 0);
  if (code < 0) w.fail("out of memory", code);
  w.convert = sws_getContext(w.coded.width, w.coded.height, AV_PIX_FMT_BGR24, w.coded.width,
                             w.coded.height, AV_PIX_FMT_YUV420P, SWS_BILINEAR, nullptr, nullptr,
                             nullptr);
  if (w.convert == nullptr) w.fail("no colour conversion", AVERROR(EINVAL));
  code = avio_open(&w.format->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (code < 0) w.fail("cannot create the file", code);
  // The index at the start of an .mp4, so that a browser plays it before it has all of it.
  AVDictionary* options = nullptr;
  av_dict_set(&options, "movflags", "+faststart", 0);
  code = avformat_write_header(w.format, &options);
  av_dict_free(&options);
  if (code < 0) w.fail("cannot write the header", code);
}

const std::string& H264Writer::write_error() const { return impl_->write_error; }

const std::vector<std::string>& H264Writer::presets() {
  static const std::vector<std::string> names{"ultrafast", "superfast", "veryfast",
                                              "faster",    "fast",      "medium",
                                              "slow",      "slower",    "veryslow"};
  return names;
}

H264Writer::~H264Writer() {
  try {
    finish();
  } catch (const std::exception& error) {
    spdlog::error("{}", error.what());
  }
}

void H264Writer::write(const cv::Mat& bgr, std::int64_t time_ns) {
  Impl& w = *impl_;
  if (bgr.type() != CV_8UC3 || bgr.size() != w.size) {
    throw std::runtime_error("video.sink: H.264 output '" + w.path + "': a frame of another size "
                             "or type than the video's");
  }
  int code = av_frame_make_writable(w.frame);
  if (code < 0) w.fail("out of memory", code);
  const cv::Mat* coded = &bgr;
  if (w.coded != w.size) {
    cv::copyMakeBorder(bgr, w.padded, 0, w.coded.height - w.size.height, 0,
                       w.coded.width - w.size.width, cv::BORDER_REPLICATE);
    coded = &w.padded;
  }
  const std::uint8_t* source[1] = {coded->data};
  const int stride[1] = {static_cast<int>(coded->step[0])};
  sws_scale(w.convert, source, stride, 0, coded->rows, w.frame->data, w.frame->linesize);
  // Each frame at its own time, after the one before (a frame that came out of order or at
  // the same time goes one tick later).
  w.frame->pts =
      std::max(w.last_pts + 1, static_cast<std::int64_t>(std::llround(static_cast<double>(time_ns) *
                                                                      kTicksPerSecond / 1e9)));
  w.last_pts = w.frame->pts;
  code = avcodec_send_frame(w.codec, w.frame);
  if (code < 0) w.fail("encoding failed", code);
  w.drain();
}

void H264Writer::finish() {
  Impl& w = *impl_;
  if (w.finished) return;
  w.finished = true;
  const int code = avcodec_send_frame(w.codec, nullptr);
  if (code < 0 && code != AVERROR_EOF) w.fail("flushing the encoder failed", code);
  w.drain();
  const int trailer = av_write_trailer(w.format);
  if (trailer < 0) {
    if (w.write_error.empty()) w.write_error = av_error(trailer);
    w.fail("cannot write the index (disk full?)", trailer);
  }
  // What the muxer could not write as it went shows in its buffer's error.
  if (w.format->pb != nullptr && w.format->pb->error < 0 && w.write_error.empty()) {
    w.write_error = av_error(w.format->pb->error);
  }
}

}  // namespace micromodels::vision
