// `video.source` and `video.sink`: the pipeline's ends, decoding and encoding with OpenCV's
// FFmpeg backend.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "stage_registration.hpp"
#include "video_input.hpp"
#include "video_sink.hpp"
#include "video_source.hpp"

namespace micromodels::vision {

namespace {

// An integer param declared at least 0.
std::uint64_t non_negative(const Params& params, const std::string& key) {
  return static_cast<std::uint64_t>(params.integer(key));
}

// The options the params give (their ranges are the params' own).
VideoSourceOptions source_options(const Params& params) {
  VideoSourceOptions options{.path = params.text("path"),
                             .stream = static_cast<std::uint32_t>(params.integer("stream")),
                             .max_frames = non_negative(params, "max_frames"),
                             .start = non_negative(params, "start"),
                             .fps = params.number("fps"),
                             .realtime = params.boolean("realtime"),
                             .reconnect_s = params.number("reconnect_s")};
  return options;
}

VideoSinkOptions sink_options(const Params& params) {
  VideoSinkOptions options{.path = params.text("path"),
                           .field = params.text("field"),
                           .fps = params.number("fps"),
                           .codec = params.text("codec"),
                           .preset = params.text("preset"),
                           .side_by_side = params.text("side_by_side"),
                           .eye_inset = params.boolean("eye_inset"),
                           .max_width = static_cast<int>(std::min<std::uint64_t>(
                               non_negative(params, "max_width"), INT32_MAX)),
                           .contact_sheet = params.text("contact_sheet"),
                           .markers = params.boolean("markers"),
                           .eye_strip = params.text("eye_strip"),
                           .expected_frames = non_negative(params, "expected_frames"),
                           .audio = params.boolean("audio")};
  return options;
}

}  // namespace

void register_video_stages(Registry& registry) {
  // Filled member by member: designated initializers that leave members out trip GCC's
  // -Wmissing-field-initializers.
  StageType source;
  source.name = "video.source";
  source.help =
      "Frames of video files, images, folders of images (by name), cameras or stream URLs "
      "(several, separated by commas, each its own stream), as 8-bit BGR field 'frame' plus "
      "'fps'.";
  source.params = {
      {"path", ParamType::text, std::nullopt,
       "video file, image, folder of images, camera (\"0\", \"/dev/video0\") or stream URL "
       "(rtsp://, http://, udp://, tcp://); several separated by commas"},
      {"stream", ParamType::integer, std::int64_t{0},
       "stream id of the first input's packets; the next inputs count on from it",
       ParamRange{.low = 0, .high = UINT32_MAX}},
      {"max_frames", ParamType::integer, std::int64_t{0}, "stop each input after this many; 0: all",
       ParamRange{.low = 0}},
      {"start", ParamType::integer, std::int64_t{0}, "first frame (or image) to read; files only",
       ParamRange{.low = 0}},
      {"fps", ParamType::number, 0.0, "rate for images and inputs that report none; 0: 25",
       ParamRange{.low = 0}},
      {"realtime", ParamType::boolean, false,
       "deliver frames no faster than their rate, like a camera (files; live inputs are paced "
       "by their source)"},
      {"reconnect_s", ParamType::number, 30.0,
       "camera or stream that drops: retry (0.5 s doubling to 8 s apart) for this many seconds, "
       "then end its stream; 0: end at once",
       ParamRange{.low = 0}}};
  source.info = [](const Params& params) {
    // A bad param is a configuration error, at its line (the constructor checks the same).
    check_source_options(source_options(params));
    StageInfo info;
    info.writes = {"frame", "fps", "media"};
    // A file decodes as fast as the CPU allows; a camera, a network stream or a file paced in
    // real time waits for the next frame, which must not hold a pool thread.
    info.blocking = params.boolean("realtime");
    for (const std::string& path : split_video_inputs(params.text("path"))) {
      const VideoInputKind kind = classify_video_input(path);
      info.blocking = info.blocking || is_live(kind);
      if (!is_live(kind)) info.files_read.push_back({.param = "path", .path = path});
    }
    return info;
  };
  source.make_source = [](const Params& params) -> std::unique_ptr<Source> {
    return std::make_unique<VideoSource>(source_options(params));
  };
  registry.add(std::move(source));

  StageType sink;
  sink.name = "video.sink";
  sink.help =
      "Writes an image field to a video (.mp4, .m4v, .mov, .avi, .mkv), numbered PNGs (path ending "
      "in '/') "
      "or an MPEG-TS stream (udp://, tcp://), in the order received: use it with "
      "`ordered: true`. {stream} in the path: one output per stream.";
  sink.params = {
      {"path", ParamType::text, std::nullopt,
       "output .mp4/.m4v/.mov/.avi/.mkv, a folder ending in '/' for PNGs, or udp://host:port "
       "or tcp://host:port (MPEG-TS); {stream} in it: one output per stream"},
      {"field", ParamType::text, std::string("frame"), "image field to write"},
      {"fps", ParamType::number, 0.0, "0: the packets' 'fps' field, else 25", ParamRange{.low = 0}},
      {"codec", ParamType::text, std::string(),
       "FourCC: avc1 (H.264, plays in browsers), mp4v, MJPG, FFV1 (lossless, .mkv); "
       "empty: avc1 for files, mp4v (no encoder delay) for streams"},
      {"preset", ParamType::text, std::string("superfast"),
       "with codec avc1 to a file: x264's speed preset, ultrafast to veryslow (faster: "
       "less CPU, larger files; quality is constant, CRF 20)"},
      {"side_by_side", ParamType::text, std::string(),
       "second image field written left of 'field' (e.g. input_frame); empty: none"},
      {"eye_inset", ParamType::boolean, false,
       "with side_by_side: both images' eyes enlarged in a band below them, "
       "labelled when a frame was not fully corrected (gaze_strength, gaze_reason)"},
      {"max_width", ParamType::integer, std::int64_t{0},
       "frames (side by side: the pair) wider than this are written scaled down to "
       "it, aspect kept; 0: as they are",
       ParamRange{.low = 0}},
      {"contact_sheet", ParamType::text, std::string(),
       "PNG of 6 frames spread over the video; written at close ({stream} in it "
       "when in the path)"},
      {"markers", ParamType::boolean, false,
       "mark the eye landmarks and irises on the contact sheet"},
      {"eye_strip", ParamType::text, std::string(),
       "PNG of 6 frames' eyes enlarged, before over after (needs side_by_side), "
       "each labelled with how much it was corrected and why not fully "
       "(gaze_strength, gaze_reason); written at close"},
      {"expected_frames", ParamType::integer, std::int64_t{0},
       "frames in the video, to space the contact sheet; 0: unknown", ParamRange{.low = 0}},
      {"audio", ParamType::boolean, true,
       "a video file gets the sound of the video file its frames came from ('media', "
       "from video.source), from its first frame to its last, copied at close; left "
       "out, with a warning, when frames were dropped on the way"}};
  sink.info = [](const Params& params) {
    // A bad param is a configuration error, at its line (the constructor checks the same).
    check_sink_options(sink_options(params));
    StageInfo info;
    info.reads = {params.text("field")};
    if (!params.text("side_by_side").empty()) info.reads.push_back(params.text("side_by_side"));
    // The packets' frame rate unless set here; the eyes drawn on the contact sheet.
    if (params.number("fps") <= 0) info.optional_reads.push_back("fps");
    if (params.boolean("audio")) info.optional_reads.push_back("media");
    if (!params.text("contact_sheet").empty() || !params.text("eye_strip").empty() ||
        params.boolean("eye_inset")) {
      info.optional_reads.insert(info.optional_reads.end(), {"landmarks", "iris"});
    }
    // The eye strip and the eye inset say how much each frame was corrected, and why not fully.
    if (!params.text("eye_strip").empty() || params.boolean("eye_inset")) {
      info.optional_reads.insert(info.optional_reads.end(), {"gaze_strength", "gaze_reason"});
    }
    for (const char* param : {"path", "contact_sheet", "eye_strip"}) {
      const std::string& path = params.text(param);
      if (!is_stream_output(path)) info.files_written.push_back({.param = param, .path = path});
    }
    return info;
  };
  sink.make = [](const Params& params) -> std::unique_ptr<Stage> {
    return std::make_unique<VideoSink>(sink_options(params));
  };
  registry.add(std::move(sink));
}

}  // namespace micromodels::vision
