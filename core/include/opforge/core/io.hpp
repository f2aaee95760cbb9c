#pragma once
// Image and file I/O. This is the only place where pixels change between
// opforge's float32 RGB convention and on-disk integer/BGR representations.
//
// Reading sniffs the content (PNG signature, JPEG SOI marker, NPY magic), so a
// mislabelled extension still reads correctly. Writing chooses the format from
// the extension. Every write goes to a temporary file in the destination
// directory and is renamed into place only when complete: a crash, a kill or a
// full disk never leaves a file under the final name that looks complete.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "opforge/core/image.hpp"

namespace opforge {

/// Reads a whole regular file. Throws Error naming the path if it is missing,
/// not a regular file (a directory, a device such as /dev/zero, a FIFO or a
/// socket: their size is unknown), unreadable, larger than `max_bytes` or than
/// the memory this process may still allocate, or (when `allow_empty` is
/// false) 0 bytes long.
std::vector<std::uint8_t> read_file(const std::filesystem::path& path, bool allow_empty = false,
                                    std::uint64_t max_bytes = UINT64_MAX);

/// Writes `bytes` to `path` atomically (temporary file + rename). Throws Error
/// naming the path and the OS reason (e.g. "No space left on device"); the
/// temporary file is removed on failure.
void write_file_atomic(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);

/// A file written piece by piece under a hidden temporary name in its
/// directory and renamed into place by commit(); destroyed uncommitted, it
/// removes the temporary. For outputs too large to assemble in memory
/// (dataset manifests, tar shards). Failed writes throw WriteError.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();

 private:
  [[noreturn]] void fail(int error);
  std::filesystem::path path_, tmp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

/// The default pixel limit, PIL's (2^30 / 4 / 3 ≈ 89.5 MP: a quarter GiB of
/// 8-bit RGB, about 1 GiB as float32). Images larger than this are refused
/// unless the caller raises the limit (`--max-pixels`, a recipe's max_pixels).
inline constexpr std::uint64_t kDefaultMaxPixels = 89'478'485;
/// The largest side any reader accepts.
inline constexpr std::uint64_t kMaxImageSide = 65536;

/// What a decoder may allocate. The header's dimensions are checked before any
/// pixel memory is allocated: a 70-byte PNG can claim 30000×30000.
struct DecodeLimits {
  std::uint64_t max_pixels = kDefaultMaxPixels;  ///< width × height
};

/// Throws Error "cannot read 'NAME': …" unless a width × height image with
/// `channels` values of `bytes_per_value` bytes each may be decoded: at most
/// kMaxImageSide a side, at most limits.max_pixels pixels, and its buffers
/// (the decoded values and the float32 image) within the memory budget.
void check_image_dimensions(const std::string& name, std::uint64_t width, std::uint64_t height, int channels,
                            int bytes_per_value, const DecodeLimits& limits);

/// Reads an image as float32 grey or RGB in [0,1]:
///  - PNG: 1/2/4/8/16-bit grey, RGB or palette (k/255 or k/65535);
///  - JPEG: baseline/progressive grey or colour via libjpeg-turbo (k/255);
///  - .npy: float32 H×W or H×W×C (C = 1 or 3), little-endian, C order,
///    values taken as they are (RGB order).
/// Anything else — missing, empty, truncated or corrupt files, alpha channels,
/// CMYK, other dtypes, non-finite or out-of-range values (require_image's
/// rule), images beyond `limits` — throws Error with a one-line explanation.
Image read_image(const std::filesystem::path& path, const DecodeLimits& limits = {});

/// read_image on bytes already in memory (content sniffed the same way).
Image decode_image(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits = {});

/// Decoders on an in-memory buffer; `name` is used in error messages.
Image decode_png(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits = {});
Image decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits = {});
cv::Mat decode_npy(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits = {});

struct ImageWriteOptions {
  int png_depth = 8;       ///< 8 or 16 bits per channel
  int jpeg_quality = 95;   ///< 1..100, used for .jpg/.jpeg
  int png_compression = 1; ///< deflate level 0..12 (libdeflate's; 1 is fastest)
};

/// Writes `img` (CV_32FC1/CV_32FC3, RGB) by extension:
///  - .png: clip to [0,1], round(x·255) or round(x·65535) (half away from zero);
///  - .jpg/.jpeg: clip, round(x·255), 4:2:0 baseline JPEG;
///  - .npy: the float32 values unclipped, H×W (grey) or H×W×3.
/// Throws Error for an unknown extension or a failed write.
void write_image(const std::filesystem::path& path, const Image& img,
                 const ImageWriteOptions& options = {});

/// Throws Error (naming the path and the valid extensions) unless write_image
/// can write `path`: .png, .npy, .jpg or .jpeg, in any case. Lets callers
/// refuse a bad output name before doing any work.
void require_writable_extension(const std::filesystem::path& path);

/// Encoders to an in-memory buffer (same conventions as write_image).
std::vector<std::uint8_t> encode_png(const Image& img, int depth, int compression = 1);
std::vector<std::uint8_t> encode_npy(const cv::Mat& m);

/// Baseline JPEG through libjpeg-turbo: jpeg_set_defaults, then
/// jpeg_set_quality(quality, force_baseline = TRUE), ISLOW DCT, standard
/// Huffman tables, JFIF YCbCr with 4:2:0 (or 4:4:4) chroma; a 1-channel image
/// becomes a greyscale JPEG. `u8` is CV_8UC1 or CV_8UC3 in RGB order.
std::vector<std::uint8_t> encode_jpeg(const cv::Mat& u8, int quality, bool chroma_420 = true);

/// Quantises a float image to 8 bits: clip to [0,1], round(x·255) half away
/// from zero. Channel order is kept. Returns CV_8UC1/CV_8UC3.
cv::Mat quantize_u8(const Image& img);

}  // namespace opforge
