// The sound of a video file copied into a video the pipeline wrote from its frames: the frames
// go through the stages, the audio does not, so `video.sink` puts it back when it closes.
#pragma once

#include <string>

namespace micromodels::vision {

/// Adds the first audio stream of `media`, from `from_s` to `to_s` on its timeline (the written
/// frames' first and end times), to the video file `video`, in place: both are copied packet by
/// packet, nothing is encoded again, and the audio starts with the first frame. Returns "" when
/// the audio was added, else why there was none to add ("no audio track", a container that
/// cannot hold its codec); throws std::runtime_error when a file cannot be read or written (the
/// video is then left as it was).
[[nodiscard]] std::string copy_audio(const std::string& video, const std::string& media,
                                     double from_s, double to_s);

}  // namespace micromodels::vision
