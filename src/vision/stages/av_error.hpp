// FFmpeg's libraries report failures as negative codes: their text, for messages.
#pragma once

#include <string>

extern "C" {
#include <libavutil/error.h>
}

namespace micromodels::vision {

[[nodiscard]] inline std::string av_error(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

}  // namespace micromodels::vision
