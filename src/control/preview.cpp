#include "preview.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "wire/image_ref.hpp"

namespace micromodels::detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kDefaultFps = 10;
constexpr double kMaxFps = 60;
constexpr int kJpegQuality = 80;
// How long one wait for a packet lasts before the stream looks again at whether it should end.
constexpr std::chrono::milliseconds kPoll{200};

const char* depth_name(Depth depth) { return depth == Depth::u8 ? "8-bit" : "32-bit float"; }

// The preview shows 8-bit gray and BGR images.
bool shown(const Image& image) {
  return image.depth == Depth::u8 && (image.channels == 1 || image.channels == 3) &&
         image.width > 0 && image.height > 0 && image.pixels.size() >= image.byte_size();
}

// The JPEG of an image `shown` accepts; nullopt when this build has no encoder.
std::optional<std::string> jpeg_of(const Image& image) {
  const PackedImage packed =
      pack_image(image, WireImages{.kind = WireImages::Kind::jpeg, .jpeg_quality = kJpegQuality});
  if (packed.encoding != WireImages::Kind::jpeg) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(packed.bytes.data()), packed.bytes.size());
}

// "frame, input_frame" and the other fields, for messages.
std::string fields_of(const Packet& packet) {
  std::string images;
  std::string others;
  for (const Packet::Field& f : packet.fields) {
    std::string& list = std::holds_alternative<Image>(f.value) ? images : others;
    list += (list.empty() ? "" : ", ") + f.name;
  }
  return "its image fields: " + (images.empty() ? std::string("none") : images) +
         "; its other fields: " + (others.empty() ? std::string("none") : others);
}

std::optional<double> parse_number(const std::string& text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::string preview_part(const std::string& jpeg) {
  return "--micromodels\r\nContent-Type: image/jpeg\r\nContent-Length: " +
         std::to_string(jpeg.size()) + "\r\n\r\n" + jpeg + "\r\n";
}

PreviewStream::PreviewStream(Previews& previews, PacketTap& tap, std::string stage,
                             std::string field, double fps, std::string first_part,
                             std::string image_fields)
    : previews_(previews),
      tap_(tap),
      stage_(std::move(stage)),
      field_(std::move(field)),
      image_fields_(std::move(image_fields)),
      period_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1 / fps))),
      first_(std::move(first_part)) {}

PreviewStream::~PreviewStream() {
  std::lock_guard lock(previews_.mutex_);
  --previews_.clients_;
}

std::string PreviewStream::next_part(const std::function<bool()>& writable) {
  if (!first_.empty()) {
    last_ = Clock::now();
    return std::exchange(first_, {});
  }
  while (!previews_.stopping() && writable()) {
    // The rate cap: the next part is the first packet to leave the stage a period after the
    // last part, so that what is shown is fresh, not a packet kept since.
    const auto due = last_ + period_;
    if (Clock::now() < due) {
      std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), kPoll));
      continue;
    }
    const PacketTap::Next next = tap_.next(kPoll);
    if (next.closed) break;
    if (!next.packet) continue;
    const auto* image = std::get_if<Image>(next.packet->find(field_));
    if (image == nullptr || !shown(*image)) continue;  // a packet without it: the next one
    std::optional<std::string> jpeg = jpeg_of(*image);
    if (!jpeg) break;
    last_ = Clock::now();
    return preview_part(*jpeg);
  }
  return {};
}

std::variant<Reply, std::unique_ptr<PreviewStream>> Previews::open(
    const std::string& path, const std::multimap<std::string, std::string>& query) {
  const std::string usage =
      "GET /preview/FIELD?stage=NAME&fps=N (an image field of the packets leaving stage NAME, "
      "default the last stage; at most N frames a second, default 10)";
  std::string field = "frame";
  if (path != "/preview") {
    field = path.substr(std::string_view("/preview/").size());
    if (field.empty() || field.find('/') != std::string::npos) {
      return error_reply(404, "no route GET " + path + "; the preview is " + usage);
    }
  }
  std::string stage;
  double fps = kDefaultFps;
  for (const auto& [key, value] : query) {
    if (key == "stage") {
      stage = value;
    } else if (key == "fps") {
      const std::optional<double> number = parse_number(value);
      if (!number || !(*number > 0 && *number <= kMaxFps)) {
        return error_reply(400, "fps must be a number above 0 and at most 60, got '" + value + "'");
      }
      fps = *number;
    } else {
      return error_reply(400, "unknown query parameter '" + key + "'; the preview is " + usage);
    }
  }
  if (stage.empty()) {
    const MetricsSnapshot metrics = run_.metrics();
    if (metrics.stages.empty()) return error_reply(404, "no stage runs in this process");
    stage = metrics.stages.back().name;
  }
  PacketTap* tap = nullptr;
  try {
    tap = &run_.tap(stage);
  } catch (const std::invalid_argument& e) {
    return error_reply(404, std::string("preview: ") + e.what());
  }
  {
    std::lock_guard lock(mutex_);
    if (clients_ >= kMaxClients) {
      return error_reply(503, std::to_string(kMaxClients) +
                                  " preview streams are open, the most this endpoint serves at "
                                  "once; close one (a browser tab showing it) and try again");
    }
    ++clients_;
  }
  // From here the slot is the stream's, or given back on the way out.
  auto give_back = [this](Reply reply) {
    std::lock_guard lock(mutex_);
    --clients_;
    return reply;
  };
  // The field is checked against a real packet: its type is known only from one.
  const auto deadline = Clock::now() + kFirstPacketWait;
  std::shared_ptr<const Packet> packet;
  while (!packet) {
    const PacketTap::Next next = tap->next(kPoll);
    if (next.closed) {
      return give_back(error_reply(
          503, "the run has ended: no packet will leave stage '" + stage + "' any more"));
    }
    packet = next.packet;
    if (!packet && (stopping() || Clock::now() >= deadline)) {
      return give_back(error_reply(
          503, "no packet left stage '" + stage + "' in the last " +
                   std::to_string(kFirstPacketWait.count()) +
                   " s, so its field '" + field +
                   "' cannot be checked; is the run still going (GET /status)? Try again"));
    }
  }
  const Value* value = packet->find(field);
  if (value == nullptr) {
    // The image fields as a list too: the dashboard offers them, or says there is none to show.
    nlohmann::ordered_json images = nlohmann::ordered_json::array();
    for (const Packet::Field& f : packet->fields) {
      if (std::holds_alternative<Image>(f.value)) images.push_back(f.name);
    }
    return give_back(error_reply(404,
                                 "the packets leaving stage '" + stage + "' have no field '" +
                                     field + "'; " + fields_of(*packet),
                                 {{"image_fields", images}}));
  }
  const auto* image = std::get_if<Image>(value);
  if (image == nullptr) {
    return give_back(error_reply(
        400, "field '" + field + "' of the packets leaving stage '" + stage + "' holds " +
                 std::string(value_type_name(value->index())) + ", not an image; " +
                 fields_of(*packet)));
  }
  if (!shown(*image)) {
    return give_back(error_reply(
        400, "field '" + field + "' of stage '" + stage + "' is a " + depth_name(image->depth) +
                 " image of " + std::to_string(image->channels) + " channel(s), " +
                 std::to_string(image->width) + "x" + std::to_string(image->height) +
                 "; the preview shows 8-bit images of 1 (gray) or 3 (BGR) channels"));
  }
  std::optional<std::string> jpeg = jpeg_of(*image);
  if (!jpeg) {
    return give_back(error_reply(501, "this build has no JPEG encoder for the preview (it comes "
                                      "with OpenCV, when the vision stages are built)"));
  }
  std::string image_fields;
  for (const Packet::Field& f : packet->fields) {
    if (std::holds_alternative<Image>(f.value)) image_fields += (image_fields.empty() ? "" : ",") + f.name;
  }
  return std::make_unique<PreviewStream>(*this, *tap, stage, field, fps, preview_part(*jpeg),
                                         image_fields);
}

}  // namespace micromodels::detail
