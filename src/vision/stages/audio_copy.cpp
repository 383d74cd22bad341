#include "audio_copy.hpp"

#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mathematics.h>
}

#include "av_error.hpp"

namespace micromodels::vision {

namespace {

struct InputCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
using Input = std::unique_ptr<AVFormatContext, InputCloser>;

struct OutputCloser {
  void operator()(AVFormatContext* c) const {
    if (c->pb != nullptr) avio_closep(&c->pb);
    avformat_free_context(c);
  }
};
using Output = std::unique_ptr<AVFormatContext, OutputCloser>;

struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
using PacketPtr = std::unique_ptr<AVPacket, PacketFree>;

Input open_input(const std::string& path) {
  AVFormatContext* context = nullptr;
  if (const int code = avformat_open_input(&context, path.c_str(), nullptr, nullptr); code < 0) {
    throw std::runtime_error("cannot read '" + path + "': " + av_error(code));
  }
  Input input(context);
  if (const int code = avformat_find_stream_info(context, nullptr); code < 0) {
    throw std::runtime_error("cannot read the streams of '" + path + "': " + av_error(code));
  }
  return input;
}

// One input stream copied to one output stream: its next packet, read ahead so that the two
// inputs can be written in time order.
struct Copy {
  AVFormatContext* input;
  int from;  // the input's stream index
  AVStream* to;
  std::int64_t shift = 0;  // subtracted from the input's timestamps (its time base)
  std::int64_t end = AV_NOPTS_VALUE;  // packets from here on are not copied (its time base)
  PacketPtr next{av_packet_alloc()};
  bool done = false;
  // Keep the last packet before `shift` too, when the container can start a stream before its
  // first frame is shown (MP4's edit list): an AAC decoder needs the packet before the first
  // one it plays (the encoder's priming at a file's start) to decode that one right.
  bool preroll = false;
  PacketPtr held{av_packet_alloc()};       // the last packet before `shift` so far
  PacketPtr pending{av_packet_alloc()};    // the first packet from `shift`, after `held`
  std::int64_t last_dts = AV_NOPTS_VALUE;  // the packet before's (its time base)
  std::int64_t step = 0;                   // the last gap between two packets' dts

  // Gives a packet that has no duration (the MP4 reader gives none to frames that are shown
  // in another order than they are stored) the gap between the packets before it. The muxer
  // takes the stream's length from the last packet's duration: without one the edit list
  // ends where the last frame starts, and players leave that frame out.
  void fill_duration(AVPacket* packet) {
    if (packet->dts != AV_NOPTS_VALUE) {
      if (last_dts != AV_NOPTS_VALUE && packet->dts > last_dts) step = packet->dts - last_dts;
      last_dts = packet->dts;
    }
    if (packet->duration > 0) return;
    if (step > 0) {
      packet->duration = step;
      return;
    }
    const AVStream* stream = input->streams[from];
    const AVRational rate =
        stream->avg_frame_rate.num > 0 ? stream->avg_frame_rate : stream->r_frame_rate;
    if (rate.num > 0 && rate.den > 0) {
      packet->duration = av_rescale_q(1, av_inv_q(rate), stream->time_base);
    }
  }

  // Reads this stream's next packet to copy; false at its end.
  bool advance() {
    if (pending->size > 0) {
      av_packet_unref(next.get());
      av_packet_move_ref(next.get(), pending.get());
      return true;
    }
    while (!done) {
      av_packet_unref(next.get());
      if (av_read_frame(input, next.get()) < 0) break;
      if (next->stream_index != from) continue;
      const std::int64_t at = next->pts != AV_NOPTS_VALUE ? next->pts : next->dts;
      if (at == AV_NOPTS_VALUE) continue;
      if (at < shift) {  // before the first frame
        if (preroll) {
          av_packet_unref(held.get());
          av_packet_move_ref(held.get(), next.get());
        }
        continue;
      }
      if (end != AV_NOPTS_VALUE && at >= end) break;
      if (held->size > 0) {
        av_packet_move_ref(pending.get(), next.get());
        av_packet_move_ref(next.get(), held.get());
      }
      return true;
    }
    done = true;
    return false;
  }
  // The next packet's time, seconds.
  [[nodiscard]] double time() const {
    const std::int64_t at = next->dts != AV_NOPTS_VALUE ? next->dts : next->pts;
    return static_cast<double>(at - shift) * av_q2d(input->streams[from]->time_base);
  }
};

}  // namespace

std::string copy_audio(const std::string& video, const std::string& media, double from_s,
                       double to_s) {
  Input sound = open_input(media);
  const int audio = av_find_best_stream(sound.get(), AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (audio < 0) return "no audio track";
  Input picture = open_input(video);
  const int frames = av_find_best_stream(picture.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (frames < 0) throw std::runtime_error("'" + video + "' holds no video stream");

  // The result goes to a file beside the video (same extension: the container is guessed from
  // it), which then takes its place.
  const std::filesystem::path target(video);
  const std::filesystem::path temporary =
      target.parent_path() / ("." + target.stem().string() + ".audio" + target.extension().string());
  AVFormatContext* allocated = nullptr;
  if (const int code = avformat_alloc_output_context2(&allocated, nullptr, nullptr,
                                                      temporary.c_str());
      code < 0) {
    throw std::runtime_error("cannot write '" + temporary.string() + "': " + av_error(code));
  }
  Output out(allocated);
  const AVCodecParameters* sound_codec = sound->streams[audio]->codecpar;
  const std::string cannot_hold =
      std::string("a ") + target.extension().string() + " file cannot hold its audio (" +
      avcodec_get_name(sound_codec->codec_id) + "); write .mkv to keep it";
  if (avformat_query_codec(out->oformat, sound_codec->codec_id, FF_COMPLIANCE_NORMAL) != 1) {
    return cannot_hold;
  }
  const auto add_stream = [&](const AVStream* from) {
    AVStream* to = avformat_new_stream(out.get(), nullptr);
    if (to == nullptr || avcodec_parameters_copy(to->codecpar, from->codecpar) < 0) {
      throw std::runtime_error("cannot add a stream to '" + temporary.string() + "'");
    }
    to->codecpar->codec_tag = 0;  // the container's own tag for the codec
    to->time_base = from->time_base;
    return to;
  };
  Copy picture_copy{.input = picture.get(), .from = frames, .to = add_stream(picture->streams[frames])};
  Copy sound_copy{.input = sound.get(), .from = audio, .to = add_stream(sound->streams[audio])};
  const AVRational sound_base = sound->streams[audio]->time_base;
  sound_copy.shift = av_rescale_q(std::llround(from_s * AV_TIME_BASE), AV_TIME_BASE_Q, sound_base);
  sound_copy.end = av_rescale_q(std::llround(to_s * AV_TIME_BASE), AV_TIME_BASE_Q, sound_base);
  // From a second before the first frame (the packet before it included, and a file's priming
  // packet, which comes before its time 0): the copy skips what comes before it.
  av_seek_frame(sound.get(), audio,
                sound_copy.shift - av_rescale_q(1, AVRational{1, 1}, sound_base),
                AVSEEK_FLAG_BACKWARD);
  sound_copy.preroll = (out->oformat->flags & AVFMT_TS_NEGATIVE) != 0;

  if (const int code = avio_open(&out->pb, temporary.c_str(), AVIO_FLAG_WRITE); code < 0) {
    throw std::runtime_error("cannot write '" + temporary.string() + "': " + av_error(code));
  }
  try {
    if (const int code = avformat_write_header(out.get(), nullptr); code < 0) {
      if (code == AVERROR_EXPERIMENTAL) {
        // FFmpeg names the codec for this container but writes it only as experimental (FLAC
        // in .mp4): as good as not holding it, for players.
        out.reset();
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
        return cannot_hold;
      }
      throw std::runtime_error("cannot write '" + temporary.string() + "': " + av_error(code));
    }
    picture_copy.advance();
    sound_copy.advance();
    while (!picture_copy.done || !sound_copy.done) {
      Copy& copy = sound_copy.done || (!picture_copy.done && picture_copy.time() <= sound_copy.time())
                       ? picture_copy
                       : sound_copy;
      AVPacket* packet = copy.next.get();
      const AVRational from = copy.input->streams[copy.from]->time_base;
      if (&copy == &picture_copy) copy.fill_duration(packet);
      if (packet->pts != AV_NOPTS_VALUE) packet->pts -= copy.shift;
      if (packet->dts != AV_NOPTS_VALUE) packet->dts -= copy.shift;
      av_packet_rescale_ts(packet, from, copy.to->time_base);
      packet->stream_index = copy.to->index;
      packet->pos = -1;
      if (const int code = av_interleaved_write_frame(out.get(), packet); code < 0) {
        throw std::runtime_error("cannot write '" + temporary.string() + "': " + av_error(code));
      }
      copy.advance();
    }
    if (const int code = av_write_trailer(out.get()); code < 0) {
      throw std::runtime_error("cannot write '" + temporary.string() + "': " + av_error(code));
    }
  } catch (...) {
    out.reset();
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw;
  }
  out.reset();  // closes the file
  std::error_code error;
  std::filesystem::rename(temporary, target, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw std::runtime_error("cannot replace '" + video + "': " + error.message());
  }
  return "";
}

}  // namespace micromodels::vision
