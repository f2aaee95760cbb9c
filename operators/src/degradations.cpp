// Degradations: MATLAB-compatible bicubic resize, Gaussian noise, JPEG
// (OPERATORS.md §9).

#include "opforge/operators/degradations.hpp"

#include <tbb/parallel_for.h>

#include <cmath>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/memory.hpp"
#include "opforge/core/rng.hpp"

namespace opforge {
namespace {

// ---------------------------------------------------------------- resize ---

// Keys cubic with a = −0.5, written as MATLAB's imresize writes it.
double cubic(double x) {
  const double a = std::abs(x), a2 = a * a, a3 = std::pow(a, 3);
  return (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1.0) + (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((1.0 < a) && (a <= 2.0));
}

// The taps of one dimension (MATLAB imresize `contributions`), 0-based.
struct Taps {
  int per_output = 0;
  std::vector<int> index;
  std::vector<double> weight;
};

Taps contributions(int in_length, int out_length, double scale) {
  const bool shrink = scale < 1.0;
  const double width = shrink ? 4.0 / scale : 4.0;
  Taps t;
  t.per_output = static_cast<int>(std::ceil(width)) + 2;
  t.index.resize(static_cast<std::size_t>(out_length) * t.per_output);
  t.weight.resize(t.index.size());
  const long long period = 2LL * in_length;
  for (int i = 0; i < out_length; ++i) {
    const double u = (i + 1) / scale + 0.5 * (1.0 - 1.0 / scale);  // 1-based
    const double left = std::floor(u - width / 2.0);
    double sum = 0;
    for (int k = 0; k < t.per_output; ++k) {
      const double j = left + k;  // 1-based input position
      const double w = shrink ? scale * cubic(scale * (u - j)) : cubic(u - j);
      t.weight[static_cast<std::size_t>(i) * t.per_output + k] = w;
      sum += w;
      // Half-sample symmetric border: aux = [1…n, n…1], j → aux[(j−1) mod 2n].
      long long m = (static_cast<long long>(j) - 1) % period;
      if (m < 0) m += period;
      t.index[static_cast<std::size_t>(i) * t.per_output + k] =
          static_cast<int>(m < in_length ? m : period - 1 - m);
    }
    for (int k = 0; k < t.per_output; ++k) t.weight[static_cast<std::size_t>(i) * t.per_output + k] /= sum;
  }
  return t;
}

// Resizes interleaved double data along rows (vertical) or columns.
cv::Mat resize_rows(const cv::Mat& in, int out_rows, double scale) {
  const Taps t = contributions(in.rows, out_rows, scale);
  const int n = in.cols * in.channels();
  cv::Mat out(out_rows, in.cols, in.type());
  tbb::parallel_for(0, out_rows, [&](int i) {
    double* dst = out.ptr<double>(i);
    for (int x = 0; x < n; ++x) dst[x] = 0;
    for (int k = 0; k < t.per_output; ++k) {
      const std::size_t tap = static_cast<std::size_t>(i) * t.per_output + k;
      const double w = t.weight[tap];
      const double* src = in.ptr<double>(t.index[tap]);
      for (int x = 0; x < n; ++x) dst[x] += w * src[x];
    }
  });
  return out;
}

cv::Mat resize_cols(const cv::Mat& in, int out_cols, double scale) {
  const Taps t = contributions(in.cols, out_cols, scale);
  const int c = in.channels();
  cv::Mat out(in.rows, out_cols, in.type());
  tbb::parallel_for(0, in.rows, [&](int y) {
    const double* src = in.ptr<double>(y);
    double* dst = out.ptr<double>(y);
    for (int j = 0; j < out_cols; ++j) {
      for (int ch = 0; ch < c; ++ch) {
        double s = 0;
        for (int k = 0; k < t.per_output; ++k) {
          const std::size_t tap = static_cast<std::size_t>(j) * t.per_output + k;
          s += t.weight[tap] * src[t.index[tap] * c + ch];
        }
        dst[j * c + ch] = s;
      }
    }
  });
  return out;
}

using ResizeTable = ParamTable<ResizeBicubicParams>;
const ResizeTable& resize_table() {
  static const ResizeTable table{
      "resize_bicubic",
      {
          // Shrinking by s spreads each output over 4/s input taps: below 1/1000
          // the kernel alone outgrows any image opforge reads.
          ResizeTable::real(&ResizeBicubicParams::scale, "scale", Interval::closed(0.001, 16), SamplingScale::log,
                            "scale factor; the output is ceil(scale·size) (MATLAB's rule); ignored when width and "
                            "height are set"),
          ResizeTable::integer(&ResizeBicubicParams::width, "width", IntegerRange(0, 65536),
                               "output width in pixels (0: from scale; set together with height)"),
          ResizeTable::integer(&ResizeBicubicParams::height, "height", IntegerRange(0, 65536),
                               "output height in pixels (0: from scale; set together with width)"),
      },
      [](const ResizeBicubicParams& p) {
        return (p.width == 0) == (p.height == 0)
                   ? ""
                   : "give both width and height (1..65536), or neither and a scale in [0.001, 16]";
      }};
  return table;
}

using SrTable = ParamTable<SrBicubicParams>;
const SrTable& sr_table() {
  static const SrTable table{
      "sr_bicubic",
      {
          SrTable::integer(&SrBicubicParams::scale, "scale", IntegerRange(2, 8), "super-resolution factor"),
          SrTable::choice(&SrBicubicParams::mode, "mode", {{"ilr", SrMode::ilr}, {"lr", SrMode::lr}},
                          "ilr: input = bicubic(LR) at the HR size (SRCNN, VDSR, Fan et al.); lr: input = LR "
                          "(BasicSR, HCFlow)"),
          SrTable::choice(&SrBicubicParams::y_only, "channels", {{"rgb", false}, {"y", true}},
                          "y: only the luma of MATLAB rgb2ycbcr, for input and target (Fan et al.)"),
          SrTable::integer(&SrBicubicParams::modcrop, "modcrop", IntegerRange(0, 64),
                           "crop the HR image to a multiple of this (0: the scale; Fan et al. use 6 for x3)"),
      }};
  return table;
}

// float64 input, intermediate and output, the float32 result and the taps.
double resize_peak_bytes(const Image& input, double scale, int width, int height) {
  const double rows = height > 0 ? height : std::ceil(scale * input.rows);
  const double cols = width > 0 ? width : std::ceil(scale * input.cols);
  const double c = input.channels();
  const double mid = std::max(rows * input.cols, input.rows * cols);
  const double shrink = std::min({width > 0 ? rows / input.rows : scale, width > 0 ? cols / input.cols : scale, 1.0});
  const double taps = (rows + cols) * (4.0 / shrink + 2) * 12.0;
  return 8.0 * c * (pixel_count(input) + mid + rows * cols) + 4.0 * c * rows * cols + taps;
}

// --------------------------------------------------------------- noise ---

using NoiseTable = ParamTable<GaussianNoiseParams>;
const NoiseTable& noise_table() {
  static const NoiseTable table{
      "gaussian_noise",
      {
          NoiseTable::real(&GaussianNoiseParams::sigma, "sigma", Interval::closed(0, 100), SamplingScale::linear,
                           "noise standard deviation on the 0–255 scale"),
          NoiseTable::boolean(&GaussianNoiseParams::clip, "clip", "clip the noisy image to [0, 1]"),
          NoiseTable::boolean(&GaussianNoiseParams::quantize, "quantize",
                              "round to 8-bit levels, as a PNG-written input is"),
          NoiseTable::choice(&GaussianNoiseParams::mode, "mode", {{"rgb", NoiseMode::rgb}, {"gray", NoiseMode::gray}},
                             "rgb: noise per channel; gray: MATLAB rgb2gray first (Fan et al.)"),
      }};
  return table;
}

constexpr std::uint64_t kNoiseStream = 0x6e6f697365ull;  // "noise"

// -------------------------------------------------------------- jpeg ---

using JpegTable = ParamTable<JpegDegradeParams>;
const JpegTable& jpeg_table() {
  static const JpegTable table{
      "jpeg",
      {
          JpegTable::integer(&JpegDegradeParams::quality, "quality", IntegerRange(1, 100),
                             "JPEG quality (libjpeg scaling of the Annex K tables, baseline)"),
          JpegTable::choice(&JpegDegradeParams::chroma_420, "subsampling", {{"420", true}, {"444", false}},
                            "chroma subsampling of colour JPEGs"),
          JpegTable::choice(&JpegDegradeParams::mode, "mode",
                            {{"rgb", JpegMode::rgb}, {"gray", JpegMode::gray}, {"y", JpegMode::y}},
                            "rgb: colour JPEG; gray: MATLAB rgb2gray as a greyscale JPEG; y: the Y of MATLAB rgb2ycbcr "
                            "(Fan et al.'s deblocking data)"),
      }};
  return table;
}

// The 8-bit image the encoder sees for a mode.
cv::Mat jpeg_source(const Image& input, JpegMode mode) {
  if (mode == JpegMode::rgb || input.channels() == 1) return quantize_u8(input);
  const std::vector<Plane> p = to_double_planes(input);
  const Plane grey = mode == JpegMode::gray ? gray_plane(p) : luma_plane(p);
  cv::Mat u8(input.rows, input.cols, CV_8UC1);
  for (int y = 0; y < input.rows; ++y) {
    for (int x = 0; x < input.cols; ++x) {
      const double v = grey[static_cast<std::size_t>(y) * input.cols + x];
      u8.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(std::round(std::clamp(v, 0.0, 1.0) * 255.0));
    }
  }
  return u8;
}

// The operators once their parameters are valid.

Image resize_valid(const Image& input, const ResizeBicubicParams& params) {
  double scale_rows = params.scale, scale_cols = params.scale;
  int out_rows, out_cols;
  if (params.width > 0) {
    out_rows = params.height;
    out_cols = params.width;
    scale_rows = static_cast<double>(out_rows) / input.rows;
    scale_cols = static_cast<double>(out_cols) / input.cols;
  } else {
    out_rows = static_cast<int>(std::ceil(params.scale * input.rows));
    out_cols = static_cast<int>(std::ceil(params.scale * input.cols));
  }
  if (static_cast<double>(out_rows) * out_cols > 65536.0 * 65536.0 / 4) {
    throw Error("resize_bicubic: output " + std::to_string(out_cols) + "x" + std::to_string(out_rows) +
                " is too large; valid: at most 2^30 pixels");
  }
  require_memory("resize_bicubic",
                 "resizing a " + std::to_string(input.cols) + "x" + std::to_string(input.rows) + " image to " +
                     std::to_string(out_cols) + "x" + std::to_string(out_rows),
                 resize_peak_bytes(input, params.scale, params.width, params.height));
  cv::Mat img = to_double_exact(input);
  if (scale_rows <= scale_cols) {  // smaller scale first; rows first on a tie
    img = resize_cols(resize_rows(img, out_rows, scale_rows), out_cols, scale_cols);
  } else {
    img = resize_rows(resize_cols(img, out_cols, scale_cols), out_rows, scale_rows);
  }
  Image out;
  img.convertTo(out, CV_32F);
  return out;
}

Image sr_reference_valid(const Image& source, const SrBicubicParams& params) {
  const int multiple = params.modcrop == 0 ? params.scale : params.modcrop;
  const int rows = source.rows - source.rows % multiple, cols = source.cols - source.cols % multiple;
  if (rows < params.scale || cols < params.scale) {
    throw Error("sr_bicubic: a " + std::to_string(source.cols) + "x" + std::to_string(source.rows) +
                " image is smaller than one crop multiple (" + std::to_string(multiple) + ")");
  }
  Image hr = source(cv::Rect(0, 0, cols, rows)).clone();
  if (params.y_only && hr.channels() == 3) {
    hr = from_double_planes({luma_plane(to_double_planes(hr))}, rows, cols);
  }
  return hr;
}

Image sr_input_valid(const Image& reference, const SrBicubicParams& params) {
  const Image lr = resize_valid(reference, {.scale = 1.0 / params.scale});
  if (params.mode == SrMode::lr) return lr;
  return resize_valid(lr, {.width = reference.cols, .height = reference.rows});
}

Image noise_valid(const Image& input, const GaussianNoiseParams& params, std::uint64_t seed) {
  std::vector<Plane> planes = to_double_planes(input);
  if (params.mode == NoiseMode::gray && planes.size() == 3) planes = {gray_plane(planes)};
  const int rows = input.rows, cols = input.cols, channels = static_cast<int>(planes.size());
  const CounterRng rng(seed, kNoiseStream);
  const double sigma = params.sigma / 255.0;
  tbb::parallel_for(0, rows, [&](int y) {
    for (int x = 0; x < cols; ++x) {
      for (int c = 0; c < channels; ++c) {
        // Draw index = the value's position in the interleaved image.
        const std::uint64_t index = (static_cast<std::uint64_t>(y) * cols + x) * channels + c;
        double& value = planes[c][static_cast<std::size_t>(y) * cols + x];
        value += sigma * rng.normal(index);
        if (params.clip) value = std::clamp(value, 0.0, 1.0);
        if (params.quantize) value = std::round(value * 255.0) / 255.0;
      }
    }
  });
  return from_double_planes(planes, rows, cols);
}

Image jpeg_valid(const Image& input, const JpegDegradeParams& params) {
  return decode_jpeg(encode_jpeg(jpeg_source(input, params.mode), params.quality, params.chroma_420), "jpeg_degrade");
}

// gray mode: the pair's reference is the grey image the noise is added to.
Image noise_reference(const Image& source, const GaussianNoiseParams& params) {
  if (params.mode != NoiseMode::gray || source.channels() == 1) return source;
  return from_double_planes({gray_plane(to_double_planes(source))}, source.rows, source.cols);
}

// gray/y modes: the pair's reference is the 8-bit grey/Y image the encoder sees.
Image jpeg_reference(const Image& source, const JpegDegradeParams& params) {
  if (params.mode == JpegMode::rgb || source.channels() == 1) return source;
  const cv::Mat u8 = jpeg_source(source, params.mode);
  Image grey(u8.rows, u8.cols, CV_32FC1);
  for (int y = 0; y < u8.rows; ++y) {
    for (int x = 0; x < u8.cols; ++x) grey.at<float>(y, x) = static_cast<float>(u8.at<std::uint8_t>(y, x) / 255.0);
  }
  return grey;
}

}  // namespace

Image resize_bicubic(const Image& input, const ResizeBicubicParams& params) {
  require_image(input, "resize_bicubic");
  resize_table().validate(params);
  return resize_valid(input, params);
}

Image sr_reference(const Image& source, const SrBicubicParams& params) {
  require_image(source, "sr_bicubic");
  sr_table().validate(params);
  return sr_reference_valid(source, params);
}

Image sr_input(const Image& reference, const SrBicubicParams& params) {
  sr_table().validate(params);
  return sr_input_valid(reference, params);
}

Image gaussian_noise(const Image& input, const GaussianNoiseParams& params, std::uint64_t seed) {
  require_image(input, "gaussian_noise");
  noise_table().validate(params);
  return noise_valid(input, params, seed);
}

std::vector<std::uint8_t> jpeg_encode(const Image& input, const JpegDegradeParams& params) {
  require_image(input, "jpeg_degrade");
  jpeg_table().validate(params);
  return encode_jpeg(jpeg_source(input, params.mode), params.quality, params.chroma_420);
}

Image jpeg_degrade(const Image& input, const JpegDegradeParams& params) {
  require_image(input, "jpeg_degrade");
  jpeg_table().validate(params);
  return jpeg_valid(input, params);
}


OperatorEntry resize_bicubic_entry() {
  return make_entry<ResizeBicubicParams>({
      .summary = "MATLAB-compatible bicubic resize (imresize 'bicubic' with antialiasing), float64",
      .citation = "MATLAB imresize(I, s, 'bicubic') semantics (Keys cubic a = -0.5, antialiased shrink); R. Keys, "
                  "\"Cubic Convolution Interpolation for Digital Image Processing\", IEEE TASSP 29(6), 1981",
      .kind = OperatorKind::degradation,
      .version = "1",
      .params = &resize_table(),
      .keeps_constant = 1e-6,
      .peak_bytes = [](const Image& img, const ResizeBicubicParams& p) {
        return resize_peak_bytes(img, p.scale, p.width, p.height);
      },
      .run = [](const Image& img, const ResizeBicubicParams& p, const RunContext&) { return resize_valid(img, p); },
  });
}

OperatorEntry sr_bicubic_entry() {
  return make_entry<SrBicubicParams>({
      .summary = "super-resolution pairs: modcropped HR (RGB or Y) and its bicubic LR, or LR upsampled back (ILR)",
      .citation = "C. Dong, C. C. Loy, K. He, X. Tang, \"Image Super-Resolution Using Deep Convolutional Networks\", "
                  "TPAMI 38(2), 2016 (SRCNN protocol); Q. Fan et al., ECCV 2018 (Y channel, x2/x3/x4); MATLAB imresize "
                  "bicubic",
      .kind = OperatorKind::degradation,
      .version = "1",
      .params = &sr_table(),
      // float64 copies of the reference, the LR image and the upsampled input.
      .keeps_constant = 1e-6,
      .peak_bytes = [](const Image& img, const SrBicubicParams&) { return pixel_count(img) * 40.0 * img.channels(); },
      .run = [](const Image& img, const SrBicubicParams& p, const RunContext&) { return sr_input_valid(img, p); },
      .prepare = sr_reference_valid,
  });
}

OperatorEntry gaussian_noise_entry() {
  return make_entry<GaussianNoiseParams>({
      .summary = "additive white Gaussian noise, seeded (same seed, same noise on any thread count)",
      .citation = "additive white Gaussian noise as sampled by Q. Fan et al., \"Decouple Learning for Parameterized "
                  "Image Operators\", ECCV 2018 (sigma ~ U[10, 70] on grey images); Philox4x32-10 counter RNG",
      .kind = OperatorKind::degradation,
      .version = "2",  // 2: gray mode noises the float32 grey reference the pair stores
      .params = &noise_table(),
      .peak_bytes = [](const Image& img, const GaussianNoiseParams&) { return pixel_count(img) * 24.0 * img.channels(); },
      .run = [](const Image& img, const GaussianNoiseParams& p, const RunContext& ctx) {
        return noise_valid(img, p, ctx.seed);
      },
      .prepare = noise_reference,
  });
}

OperatorEntry jpeg_degrade_entry() {
  return make_entry<JpegDegradeParams>({
      .summary = "baseline JPEG compression artefacts through libjpeg-turbo (encode at a quality, decode)",
      .citation = "ITU-T T.81 / ISO 10918-1 baseline JPEG via libjpeg-turbo (jpeg_set_quality, ISLOW DCT, standard "
                  "Huffman tables); deblocking data as in Q. Fan et al., ECCV 2018",
      .kind = OperatorKind::degradation,
      .version = "1",
      .params = &jpeg_table(),
      .peak_bytes = [](const Image& img, const JpegDegradeParams&) { return pixel_count(img) * 16.0 * img.channels(); },
      .run = [](const Image& img, const JpegDegradeParams& p, const RunContext&) { return jpeg_valid(img, p); },
      .prepare = jpeg_reference,
  });
}

}  // namespace opforge
