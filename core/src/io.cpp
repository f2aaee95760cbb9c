#include "opforge/core/io.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "opforge/core/error.hpp"

namespace opforge {
namespace fs = std::filesystem;

std::vector<std::uint8_t> read_file(const fs::path& path, bool allow_empty) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw Error("cannot read '" + path.string() + "': no such file");
  if (fs::is_directory(status)) throw Error("cannot read '" + path.string() + "': it is a directory");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot read '" + path.string() + "': " + std::strerror(errno));
  std::vector<std::uint8_t> bytes;
  std::uint8_t buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw Error("cannot read '" + path.string() + "': read error");
  if (bytes.empty() && !allow_empty) throw Error("cannot read '" + path.string() + "': the file is empty (0 bytes)");
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

Image read_image(const fs::path& path) { return decode_image(read_file(path), path.string()); }

Image decode_image(std::span<const std::uint8_t> bytes, const std::string& name) {
  if (starts_with(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return decode_png(bytes, name);
  if (starts_with(bytes, {0xFF, 0xD8, 0xFF})) return decode_jpeg(bytes, name);
  if (starts_with(bytes, {0x93, 'N', 'U', 'M', 'P', 'Y'})) {
    cv::Mat m = decode_npy(bytes, name);
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
  require_image(img, "write '" + path.string() + "'");
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
