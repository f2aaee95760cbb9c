#include "opforge/core/io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace opforge {
namespace fs = std::filesystem;

std::vector<std::uint8_t> read_file(const fs::path& path, bool allow_empty, std::uint64_t max_bytes) {
  const std::string what = "cannot read '" + path.string() + "': ";
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw Error(what + "no such file");
  if (fs::is_directory(status)) throw Error(what + "it is a directory");
  if (!fs::is_regular_file(status)) {
    throw Error(what + "not a regular file (a device, FIFO or socket has no size to check); valid: a regular file");
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(what + std::strerror(errno));
  // The size of the file as opened (it may have changed since the stat).
  struct stat opened {};
  if (::fstat(::fileno(f), &opened) != 0 || !S_ISREG(opened.st_mode)) {
    std::fclose(f);
    throw Error(what + "not a regular file; valid: a regular file");
  }
  const auto size = static_cast<std::uint64_t>(opened.st_size);
  if (size > max_bytes) {
    std::fclose(f);
    throw Error(what + "the file is " + format_bytes(static_cast<double>(size)) + ", more than the " +
                format_bytes(static_cast<double>(max_bytes)) + " an image within the pixel limit can take");
  }
  try {
    require_memory("cannot read '" + path.string() + "'", "the file", static_cast<double>(size));
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  const std::size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw Error(what + "read error");
  if (got != bytes.size()) throw Error(what + "the file shrank while it was read");
  if (bytes.empty() && !allow_empty) throw Error(what + "the file is empty (0 bytes)");
  return bytes;
}

void write_file_atomic(const fs::path& path, std::span<const std::uint8_t> bytes) {
  AtomicFileWriter file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : path_(std::move(path)) {
  static std::atomic<unsigned> counter{0};
  std::string name = ".";
  name += path_.filename().string();
  name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  tmp_ = (path_.has_parent_path() ? path_.parent_path() : fs::path(".")) / name;
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) fail(errno);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_) std::fclose(file_);
  if (!committed_) {
    std::error_code ignored;
    fs::remove(tmp_, ignored);
  }
}

void AtomicFileWriter::write(const void* data, std::size_t size) {
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) fail(errno);
}

void AtomicFileWriter::commit() {
  if (std::fflush(file_) != 0) fail(errno);
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) fail(errno);
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail(errno);
  committed_ = true;
}

void AtomicFileWriter::fail(int error) {
  error = error ? error : EIO;
  throw WriteError("cannot write '" + path_.string() + "': " + std::strerror(error), error);
}

namespace {

bool starts_with(std::span<const std::uint8_t> b, std::initializer_list<std::uint8_t> magic) {
  if (b.size() < magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), b.begin());
}

std::string lower_extension(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

}  // namespace

void check_image_dimensions(const std::string& name, std::uint64_t width, std::uint64_t height, int channels,
                            int bytes_per_value, const DecodeLimits& limits) {
  const std::string what = "cannot read '" + name + "': ";
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  if (width < 1 || height < 1) throw Error(what + "its header gives an empty image (" + size + ")");
  if (width > kMaxImageSide || height > kMaxImageSide) {
    throw Error(what + "its header says " + size + "; valid: at most " + std::to_string(kMaxImageSide) +
                " pixels on a side");
  }
  const std::uint64_t pixels = width * height;
  if (pixels > limits.max_pixels) {
    char mp[64];
    std::snprintf(mp, sizeof mp, "%.1f MP", static_cast<double>(pixels) / 1e6);
    throw Error(what + "its header says " + size + " (" + mp + "), above the pixel limit of " +
                std::to_string(limits.max_pixels) + "; raise it with --max-pixels (max_pixels in a recipe) if the "
                "image is genuine");
  }
  const double values = static_cast<double>(pixels) * channels;
  require_memory("cannot read '" + name + "'", "decoding its " + size + " pixels", values * (bytes_per_value + 4));
}

Image read_image(const fs::path& path, const DecodeLimits& limits) {
  // No valid image within the pixel limit is larger than an uncompressed
  // 16-bit RGBA PNG or a 4-channel float32 .npy of that many pixels, plus
  // generous room for headers and metadata.
  const std::uint64_t max_bytes =
      limits.max_pixels > (UINT64_MAX - (64u << 20)) / 16 ? UINT64_MAX : limits.max_pixels * 16 + (64u << 20);
  return decode_image(read_file(path, false, max_bytes), path.string(), limits);
}

Image decode_image(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits) {
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return decode_png(bytes, name, limits);
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return decode_jpeg(bytes, name, limits);
  if (starts_with(bytes, {0x93, 'N', 'U', 'M', 'P', 'Y'})) {
    cv::Mat m = decode_npy(bytes, name, limits);
    if (m.channels() != 1 && m.channels() != 3) {
      throw Error("cannot use '" + name + "': it has " + std::to_string(m.channels()) +
                  " channels; opforge accepts grey (1) or RGB (3) images");
    }
    return m;
  }
  throw Error("cannot read '" + name + "': not a PNG, JPEG or .npy file (unrecognised content)");
}

cv::Mat quantize_u8(const Image& img) {
  cv::Mat out(img.rows, img.cols, CV_MAKETYPE(CV_8U, img.channels()));
  const int n = img.cols * img.channels();
  for (int y = 0; y < img.rows; ++y) {
    const float* s = img.ptr<float>(y);
    std::uint8_t* d = out.ptr<std::uint8_t>(y);
    for (int i = 0; i < n; ++i) {
      const double v = std::isnan(s[i]) ? 0.0 : std::clamp(static_cast<double>(s[i]), 0.0, 1.0);
      d[i] = static_cast<std::uint8_t>(std::round(v * 255.0));
    }
  }
  return out;
}

void require_writable_extension(const fs::path& path) {
  const std::string ext = lower_extension(path);
  if (ext != ".png" && ext != ".npy" && ext != ".jpg" && ext != ".jpeg") {
    throw Error("cannot write '" + path.string() + "': unknown extension '" + ext +
                "'; valid: .png, .npy, .jpg, .jpeg");
  }
}

void write_image(const fs::path& path, const Image& img, const ImageWriteOptions& options) {
  require_finite_image(img, "write '" + path.string() + "'");
  require_writable_extension(path);
  const std::string ext = lower_extension(path);
  std::vector<std::uint8_t> bytes;
  if (ext == ".png") {
    if (options.png_depth != 8 && options.png_depth != 16) {
      throw Error("PNG depth " + std::to_string(options.png_depth) + " is not supported; valid: 8 or 16");
    }
    bytes = encode_png(img, options.png_depth, options.png_compression);
  } else if (ext == ".npy") {
    bytes = encode_npy(img);
  } else {  // .jpg / .jpeg
    if (options.jpeg_quality < 1 || options.jpeg_quality > 100) {
      throw Error("JPEG quality " + std::to_string(options.jpeg_quality) + " is out of range; valid: 1..100");
    }
    bytes = encode_jpeg(quantize_u8(img), options.jpeg_quality);
  }
  write_file_atomic(path, bytes);
}

}  // namespace opforge
