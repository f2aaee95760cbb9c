// PNG through libpng's full API (not OpenCV's codec, which prints libpng's
// messages to stderr and reports only "empty"). libpng reports errors by
// longjmp; every non-trivial object lives before the setjmp point so that a
// jump never skips a destructor.

#include <png.h>

#include <csetjmp>
#include <cmath>
#include <cstring>
#include <string>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"

namespace opforge {
namespace {

struct PngContext {
  std::span<const std::uint8_t> input;
  std::size_t pos = 0;
  std::vector<std::uint8_t>* output = nullptr;
  std::jmp_buf jump;
  char message[256] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof ctx->message, "%s", msg);
  std::longjmp(ctx->jump, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign (e.g. unknown ancillary chunks)

void read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->pos + n > ctx->input.size()) png_error(png, "the file is truncated");
  std::memcpy(out, ctx->input.data() + ctx->pos, n);
  ctx->pos += n;
}

void write_to_memory(png_structp png, png_bytep data, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  ctx->output->insert(ctx->output->end(), data, data + n);
}

void flush_nothing(png_structp) {}

constexpr png_uint_32 kMaxSide = 1u << 16;

// Width, height and the channel count libpng will give, read straight from the
// IHDR chunk (always the first), so the limits are checked with a message
// that names them before libpng or we allocate anything.
void check_header(std::span<const std::uint8_t> b, const std::string& name, const DecodeLimits& limits) {
  if (b.size() < 26 || std::memcmp(b.data() + 12, "IHDR", 4) != 0) return;  // libpng reports it
  const auto be32 = [&](std::size_t at) {
    return (std::uint64_t{b[at]} << 24) | (std::uint64_t{b[at + 1]} << 16) | (std::uint64_t{b[at + 2]} << 8) | b[at + 3];
  };
  const int depth = b[24], color_type = b[25];
  const int channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;  // palette: RGB(A)
  check_image_dimensions(name, be32(16), be32(20), channels, depth == 16 ? 2 : 1, limits);
}

}  // namespace

Image decode_png(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits) {
  check_header(bytes, name, limits);
  PngContext ctx;
  ctx.input = bytes;
  std::vector<std::uint8_t> pixels;
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error("cannot read '" + name + "': out of memory");
  }
  png_uint_32 width = 0, height = 0;
  int channels = 0, depth = 0;
  if (setjmp(ctx.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error("cannot read '" + name + "': corrupt PNG (" + ctx.message + ")");
  }
  png_set_read_fn(png, &ctx, read_from_memory);
  png_set_user_limits(png, kMaxSide, kMaxSide);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (png_get_bit_depth(png, info) == 16) png_set_swap(png);  // host (little-endian) order
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  width = png_get_image_width(png, info);
  height = png_get_image_height(png, info);
  channels = png_get_channels(png, info);
  depth = png_get_bit_depth(png, info);
  const std::size_t row_bytes = png_get_rowbytes(png, info);
  pixels.resize(row_bytes * height);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = pixels.data() + y * row_bytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);

  if (channels != 1 && channels != 3) {
    const char* what = channels == 2 ? " (grey + alpha)" : channels == 4 ? " (RGBA)" : "";
    throw Error("cannot use '" + name + "': it has " + std::to_string(channels) + " channels" + what +
                "; opforge accepts grey (1) or RGB (3) images");
  }
  Image img(static_cast<int>(height), static_cast<int>(width), CV_MAKETYPE(CV_32F, channels));
  const int n = static_cast<int>(width) * channels;
  for (int y = 0; y < img.rows; ++y) {
    float* d = img.ptr<float>(y);
    if (depth == 16) {
      const auto* s = reinterpret_cast<const std::uint16_t*>(rows[y]);
      for (int i = 0; i < n; ++i) d[i] = static_cast<float>(s[i] / 65535.0);
    } else {
      const std::uint8_t* s = rows[y];
      for (int i = 0; i < n; ++i) d[i] = static_cast<float>(s[i] / 255.0);
    }
  }
  return img;
}

std::vector<std::uint8_t> encode_png(const Image& img, int depth, int compression) {
  require_finite_image(img, "PNG encoder");
  const int channels = img.channels();
  const int n = img.cols * channels;
  const int bytes_per_sample = depth == 16 ? 2 : 1;
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(n) * bytes_per_sample * img.rows);
  const double scale = depth == 16 ? 65535.0 : 255.0;
  for (int y = 0; y < img.rows; ++y) {
    const float* s = img.ptr<float>(y);
    std::uint8_t* row = pixels.data() + static_cast<std::size_t>(y) * n * bytes_per_sample;
    for (int i = 0; i < n; ++i) {
      const double v = std::isnan(s[i]) ? 0.0 : std::clamp(static_cast<double>(s[i]), 0.0, 1.0);
      const auto q = static_cast<std::uint32_t>(std::round(v * scale));
      if (depth == 16) {
        row[2 * i] = static_cast<std::uint8_t>(q >> 8);  // PNG is big-endian
        row[2 * i + 1] = static_cast<std::uint8_t>(q & 0xFF);
      } else {
        row[i] = static_cast<std::uint8_t>(q);
      }
    }
  }
  std::vector<std::uint8_t> out;
  std::vector<png_bytep> rows(img.rows);
  for (int y = 0; y < img.rows; ++y) rows[y] = pixels.data() + static_cast<std::size_t>(y) * n * bytes_per_sample;
  PngContext ctx;
  ctx.output = &out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    throw Error("PNG encoder: out of memory");
  }
  if (setjmp(ctx.jump)) {
    png_destroy_write_struct(&png, &info);
    throw Error(std::string("PNG encoder failed: ") + ctx.message);
  }
  png_set_write_fn(png, &ctx, write_to_memory, flush_nothing);
  png_set_compression_level(png, compression);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.cols), static_cast<png_uint_32>(img.rows), depth,
               channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace opforge
