// JPEG through libjpeg-turbo's libjpeg API. libjpeg reports fatal errors via
// error_exit, which must not return: we longjmp back, and keep every
// non-trivial object ahead of the setjmp point. Warnings (e.g. "premature end
// of data segment", which libjpeg pads with grey) are treated as errors: a
// ground-truth tool must not silently decode a damaged file.

#include <cstdio>
// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include <csetjmp>
#include <cstring>
#include <string>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"

namespace opforge {
namespace {

struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
};

void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_error_exit(cinfo);  // a warning: corrupt data
}

}  // namespace

Image decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits) {
  jpeg_decompress_struct cinfo;
  JpegErrors err;
  std::vector<std::uint8_t> pixels;
  std::vector<JSAMPROW> rows;
  Image img;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_error_exit;
  err.mgr.emit_message = on_emit_message;
  int width = 0, height = 0, channels = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error("cannot read '" + name + "': corrupt JPEG (" + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  try {
    check_image_dimensions(name, cinfo.image_width, cinfo.image_height, cinfo.num_components == 1 ? 1 : 3, 1, limits);
  } catch (const Error&) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    throw Error("cannot use '" + name + "': CMYK JPEG has 4 channels; opforge accepts grey (1) or RGB (3) images");
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  width = static_cast<int>(cinfo.output_width);
  height = static_cast<int>(cinfo.output_height);
  channels = cinfo.output_components;
  // Rows are converted as they are decoded, through a buffer of a few rows
  // (the decoder's output group), not a copy of the whole 8-bit image.
  img.create(height, width, CV_MAKETYPE(CV_32F, channels));
  const std::size_t row_values = static_cast<std::size_t>(width) * channels;
  const int group = std::max(1, cinfo.rec_outbuf_height);
  pixels.resize(row_values * group);
  rows.resize(group);
  for (int k = 0; k < group; ++k) rows[k] = pixels.data() + row_values * k;
  float to_float[256];
  for (int k = 0; k < 256; ++k) to_float[k] = static_cast<float>(k / 255.0);
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y0 = static_cast<int>(cinfo.output_scanline);
    const int got = static_cast<int>(jpeg_read_scanlines(&cinfo, rows.data(), static_cast<JDIMENSION>(group)));
    for (int k = 0; k < got; ++k) {
      float* d = img.ptr<float>(y0 + k);
      for (std::size_t i = 0; i < row_values; ++i) d[i] = to_float[rows[k][i]];
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

std::vector<std::uint8_t> encode_jpeg(const cv::Mat& u8, int quality, bool chroma_420) {
  CV_Assert(u8.depth() == CV_8U && (u8.channels() == 1 || u8.channels() == 3));
  jpeg_compress_struct cinfo;
  JpegErrors err;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  std::vector<std::uint8_t> out;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_error_exit;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buffer);
    throw Error(std::string("JPEG encoder failed: ") + err.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(u8.cols);
  cinfo.image_height = static_cast<JDIMENSION>(u8.rows);
  cinfo.input_components = u8.channels();
  cinfo.in_color_space = u8.channels() == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  cinfo.dct_method = JDCT_ISLOW;
  if (u8.channels() == 3) {
    // jpeg_set_defaults already selects 4:2:0 (luma 2×2); 4:4:4 sets it to 1×1.
    const int f = chroma_420 ? 2 : 1;
    cinfo.comp_info[0].h_samp_factor = f;
    cinfo.comp_info[0].v_samp_factor = f;
  }
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    auto* row = const_cast<JSAMPROW>(u8.ptr<std::uint8_t>(static_cast<int>(cinfo.next_scanline)));
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  out.assign(buffer, buffer + size);
  std::free(buffer);
  return out;
}

}  // namespace opforge
