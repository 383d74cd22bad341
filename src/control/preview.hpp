// GET /preview/FIELD: an image field of the packets leaving a stage, as an MJPEG stream
// (multipart/x-mixed-replace) that browsers, ffmpeg and VLC play. No sockets here: the server
// (control_server.cpp) writes what a PreviewStream gives it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <variant>

#include "micromodels/run.hpp"

#include "control_routes.hpp"

namespace micromodels::detail {

class Previews;

/// One client's stream. Each part is encoded on the calling thread (the client's own), never on
/// a stage's.
class PreviewStream {
 public:
  PreviewStream(Previews& previews, PacketTap& tap, std::string stage, std::string field,
                double fps, std::string first_part, std::string image_fields);
  ~PreviewStream();
  PreviewStream(const PreviewStream&) = delete;
  PreviewStream& operator=(const PreviewStream&) = delete;

  /// The next part (boundary, headers, JPEG), at most `fps` a second after the last: empty once
  /// the run has ended or the endpoint stops. `writable` says whether the client still reads.
  [[nodiscard]] std::string next_part(const std::function<bool()>& writable);

  /// The stage shown (the request's, or the default) and its packets' image fields, "a,b":
  /// the response's X-Preview-Stage and X-Preview-Image-Fields, for a picker.
  [[nodiscard]] const std::string& stage() const { return stage_; }
  [[nodiscard]] const std::string& image_fields() const { return image_fields_; }

 private:
  Previews& previews_;
  PacketTap& tap_;
  std::string stage_;
  std::string field_;
  std::string image_fields_;
  std::chrono::steady_clock::duration period_;
  std::chrono::steady_clock::time_point last_{};
  std::string first_;  // the part made while the request was checked, sent first
};

/// The preview route: checks a request, holds a client slot per stream.
class Previews {
 public:
  static constexpr const char* kContentType = "multipart/x-mixed-replace; boundary=micromodels";
  /// Streams at once; a client beyond them gets 503.
  static constexpr int kMaxClients = 4;
  /// How long a request waits for the first packet, to check its field against it.
  static constexpr std::chrono::seconds kFirstPacketWait{10};

  explicit Previews(Run& run) : run_(run) {}

  /// GET /preview/FIELD?stage=NAME&fps=N (`path` "/preview" or "/preview/FIELD"): a stream, or
  /// the error reply (400, 404, 501, 503) that says what is wrong.
  [[nodiscard]] std::variant<Reply, std::unique_ptr<PreviewStream>> open(
      const std::string& path, const std::multimap<std::string, std::string>& query);

  /// The endpoint stops: every stream ends within a fraction of a second.
  void stop() { stopping_.store(true); }
  [[nodiscard]] bool stopping() const { return stopping_.load(); }

 private:
  friend class PreviewStream;
  Run& run_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  int clients_ = 0;  // streams open
};

/// One multipart part holding `jpeg`.
[[nodiscard]] std::string preview_part(const std::string& jpeg);

}  // namespace micromodels::detail
