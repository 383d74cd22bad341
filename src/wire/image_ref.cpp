#include "image_ref.hpp"

#include <bit>
#include <cstring>
#include <vector>

#include "core/detail/little_endian.hpp"
#include "micromodels/packet_codec.hpp"

#ifdef MICROMODELS_WIRE_HAS_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace micromodels::detail {

namespace {

constexpr std::uint8_t kRefFormat = 1;
constexpr std::size_t kRefHeader = 2 + 1 + 1 + 1 + 1 + 4 + 4 + 8 + 8;

std::uint64_t load64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

constexpr std::uint64_t kMul1 = 0x9E3779B97F4A7C15ull;
constexpr std::uint64_t kMul2 = 0xC2B2AE3D27D4EB4Full;

std::uint64_t mix(std::uint64_t h) noexcept {  // splitmix64's finalizer
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

}  // namespace

std::string encode_ref(const ImageRef& ref) {
  std::string out;
  out.reserve(kRefHeader + ref.key.size());
  out += "ir";
  put_le(out, kRefFormat);
  put_le(out, static_cast<std::uint8_t>(ref.encoding));
  put_le(out, static_cast<std::uint8_t>(ref.depth));
  put_le(out, static_cast<std::uint8_t>(ref.channels));
  put_le(out, static_cast<std::uint32_t>(ref.width));
  put_le(out, static_cast<std::uint32_t>(ref.height));
  put_le(out, ref.size);
  put_le(out, ref.check);
  out += ref.key;
  return out;
}

ImageRef decode_ref(std::span<const std::byte> bytes) {
  if (bytes.size() <= kRefHeader || static_cast<char>(bytes[0]) != 'i' ||
      static_cast<char>(bytes[1]) != 'r') {
    throw CodecError("an image reference of " + std::to_string(bytes.size()) +
                     " bytes that is not one (it must start with \"ir\" and name a key)");
  }
  const auto format = get_le<std::uint8_t>(bytes.data() + 2);
  if (format != kRefFormat) {
    throw CodecError("image reference format " + std::to_string(format) +
                     ", this build reads format " + std::to_string(kRefFormat));
  }
  ImageRef ref;
  const auto encoding = get_le<std::uint8_t>(bytes.data() + 3);
  const auto depth = get_le<std::uint8_t>(bytes.data() + 4);
  if (encoding > static_cast<std::uint8_t>(WireImages::Kind::jpeg) ||
      depth > static_cast<std::uint8_t>(Depth::f32)) {
    throw CodecError("an image reference with encoding " + std::to_string(encoding) + " and depth " +
                     std::to_string(depth) + " (expected 0-2 and 0-1)");
  }
  ref.encoding = static_cast<WireImages::Kind>(encoding);
  ref.depth = static_cast<Depth>(depth);
  ref.channels = get_le<std::uint8_t>(bytes.data() + 5);
  ref.width = static_cast<int>(get_le<std::uint32_t>(bytes.data() + 6));
  ref.height = static_cast<int>(get_le<std::uint32_t>(bytes.data() + 10));
  ref.size = get_le<std::uint64_t>(bytes.data() + 14);
  ref.check = get_le<std::uint64_t>(bytes.data() + 22);
  if (ref.channels <= 0 || ref.width <= 0 || ref.height <= 0) {
    throw CodecError("an image reference of " + std::to_string(ref.width) + "x" +
                     std::to_string(ref.height) + "x" + std::to_string(ref.channels) +
                     " (every dimension must be positive)");
  }
  ref.key.assign(reinterpret_cast<const char*>(bytes.data()) + kRefHeader, bytes.size() - kRefHeader);
  return ref;
}

std::uint64_t content_check(std::span<const std::byte> bytes) noexcept {
  // Four independent lanes of 8 bytes, so that the multiplications overlap.
  std::uint64_t lane[4] = {kMul1, kMul2, ~kMul1, ~kMul2};
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  for (; left >= 32; p += 32, left -= 32) {
    for (int i = 0; i < 4; ++i) lane[i] = std::rotl(lane[i] ^ (load64(p + 8 * i) * kMul1), 29) * kMul2;
  }
  std::uint64_t h = bytes.size();
  for (const std::uint64_t l : lane) h = std::rotl(h ^ mix(l), 17) * kMul1;
  for (; left > 0; ++p, --left) h = (h ^ static_cast<std::uint64_t>(*p)) * kMul2;
  return mix(h);
}

PackedImage pack_image(const Image& image, const WireImages& images) {
#ifdef MICROMODELS_WIRE_HAS_OPENCV
  if (images.kind != WireImages::Kind::raw && image.depth == Depth::u8 &&
      (image.channels == 1 || image.channels == 3) && image.pixels.size() >= image.byte_size() &&
      image.width > 0 && image.height > 0) {
    const cv::Mat mat(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3,
                      const_cast<std::byte*>(image.pixels.data()));
    std::vector<unsigned char> bytes;
    const bool png = images.kind == WireImages::Kind::png;
    std::vector<int> flags;
    if (!png) flags = {cv::IMWRITE_JPEG_QUALITY, images.jpeg_quality};
    if (cv::imencode(png ? ".png" : ".jpg", mat, bytes, flags)) {
      return {Buffer::copy_of(bytes.data(), bytes.size()), images.kind};
    }
  }
#else
  (void)images;
#endif
  return {image.pixels, WireImages::Kind::raw};
}

Image unpack_compressed(std::span<const std::byte> bytes, std::string_view what) {
#ifdef MICROMODELS_WIRE_HAS_OPENCV
  const cv::Mat packed(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<std::byte*>(bytes.data()));
  const cv::Mat mat = cv::imdecode(packed, cv::IMREAD_UNCHANGED);
  if (mat.empty() || mat.depth() != CV_8U) {
    throw CodecError("compressed image " + std::string(what) + " does not decode");
  }
  Image image = Image::allocate(mat.cols, mat.rows, mat.channels());
  const std::size_t row = static_cast<std::size_t>(mat.cols) * static_cast<std::size_t>(mat.channels());
  for (int y = 0; y < mat.rows; ++y) {
    std::memcpy(image.pixels.mutable_data() + static_cast<std::size_t>(y) * row, mat.ptr(y), row);
  }
  return image;
#else
  (void)bytes;
  throw CodecError("image " + std::string(what) +
                   " arrived compressed, and this build has no OpenCV to decode it");
#endif
}

Image unpack_image(Buffer bytes, const ImageRef& ref) {
  const std::string what = "at key " + ref.key;
  if (bytes.size() != ref.size || content_check(bytes.span()) != ref.check) {
    throw CodecError("the image " + what + " holds " + std::to_string(bytes.size()) +
                     " bytes that are not the ones its reference was made for (" +
                     std::to_string(ref.size) + " bytes and another content check)");
  }
  Image image{.width = ref.width, .height = ref.height, .channels = ref.channels, .depth = ref.depth};
  if (ref.encoding == WireImages::Kind::raw) {
    if (bytes.size() < image.byte_size()) {
      throw CodecError("the raw image " + what + " has " + std::to_string(bytes.size()) +
                       " bytes, its reference says " + std::to_string(ref.width) + "x" +
                       std::to_string(ref.height) + "x" + std::to_string(ref.channels));
    }
    image.pixels = std::move(bytes);
    return image;
  }
  Image unpacked = unpack_compressed(bytes.span(), what);
  if (unpacked.width != ref.width || unpacked.height != ref.height || unpacked.channels != ref.channels) {
    throw CodecError("the compressed image " + what + " decodes to another size than its reference says");
  }
  return unpacked;
}

}  // namespace micromodels::detail
