// L0 gradient minimisation (Xu et al. 2011), OPERATORS.md §1.

#include "opforge/operators/l0_smooth.hpp"

#include <tbb/parallel_for.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "entries.hpp"
#include "opforge/core/error.hpp"
#include "opforge/operators/fft.hpp"

namespace opforge {
namespace {

// The loop runs while β < β_max (the authors' 1e5).
constexpr double kBetaMax = 1e5;

const std::vector<ParamSpec>& l0_specs() {
  static const std::vector<ParamSpec> specs = {
      real_param("lambda", 0.02, 0.0, 1.0, true, false, SamplingScale::log,
                 "smoothness weight λ: larger values remove more edges"),
      real_param("kappa", 2.0, 1.0, 10.0, true, false, SamplingScale::linear,
                 "growth factor of the penalty weight β per iteration (the authors use (1, 2], default 2)"),
  };
  return specs;
}

void validate(const L0SmoothParams& p) {
  ParamValues v;
  v.set("lambda", p.lambda);
  v.set("kappa", p.kappa);
  validate_params("l0_smooth", l0_specs(), v);
}

using Plane = std::vector<double>;

// Splits a CV_64FCn image into n contiguous row-major planes.
std::vector<Plane> to_planes(const cv::Mat& img64) {
  const int c = img64.channels(), n = img64.rows * img64.cols;
  std::vector<Plane> planes(c, Plane(n));
  for (int y = 0; y < img64.rows; ++y) {
    const double* s = img64.ptr<double>(y);
    for (int x = 0; x < img64.cols; ++x) {
      for (int k = 0; k < c; ++k) planes[k][y * img64.cols + x] = s[x * c + k];
    }
  }
  return planes;
}

Image from_planes(const std::vector<Plane>& planes, int rows, int cols) {
  const int c = static_cast<int>(planes.size());
  Image out(rows, cols, CV_MAKETYPE(CV_32F, c));
  for (int y = 0; y < rows; ++y) {
    float* d = out.ptr<float>(y);
    for (int x = 0; x < cols; ++x) {
      for (int k = 0; k < c; ++k) d[x * c + k] = static_cast<float>(planes[k][y * cols + x]);
    }
  }
  return out;
}

// |F(∂x)|² + |F(∂y)|² at frequency (v, u): (2 − 2cos(2πu/W)) + (2 − 2cos(2πv/H)).
double gradient_mtf(int v, int u, int rows, int cols) {
  return (2.0 - 2.0 * std::cos(2.0 * std::numbers::pi * u / cols)) +
         (2.0 - 2.0 * std::cos(2.0 * std::numbers::pi * v / rows));
}

// Step 1 for one row y: circular forward differences, summed-over-channels
// threshold, h = v = 0 where Σ_c(h² + v²) < λ/β.
void threshold_gradients_row(const std::vector<Plane>& s, std::vector<Plane>& h, std::vector<Plane>& v, int y,
                             int rows, int cols, double threshold) {
  const int c = static_cast<int>(s.size());
  const std::size_t row = static_cast<std::size_t>(y) * cols;
  const std::size_t below = static_cast<std::size_t>((y + 1) % rows) * cols;
  for (int x = 0; x < cols; ++x) {
    const int right = x + 1 == cols ? 0 : x + 1;
    double energy = 0;
    for (int k = 0; k < c; ++k) {
      const double here = s[k][row + x];
      const double dx = s[k][row + right] - here;
      const double dy = s[k][below + x] - here;
      h[k][row + x] = dx;
      v[k][row + x] = dy;
      energy += dx * dx + dy * dy;
    }
    if (energy < threshold) {
      for (int k = 0; k < c; ++k) h[k][row + x] = v[k][row + x] = 0.0;
    }
  }
}

// ∂xᵀh + ∂yᵀv for one row y of one channel.
void divergence_row(const Plane& h, const Plane& v, Plane& out, int y, int rows, int cols) {
  const std::size_t row = static_cast<std::size_t>(y) * cols;
  const std::size_t above = static_cast<std::size_t>(y == 0 ? rows - 1 : y - 1) * cols;
  for (int x = 0; x < cols; ++x) {
    const int left = x == 0 ? cols - 1 : x - 1;
    out[row + x] = (h[row + left] - h[row + x]) + (v[above + x] - v[row + x]);
  }
}

}  // namespace

Image l0_smooth(const Image& input, const L0SmoothParams& params) {
  require_image(input, "l0_smooth");
  validate(params);
  const int rows = input.rows, cols = input.cols, channels = input.channels();
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const double lambda = params.lambda;

  std::vector<Plane> s = to_planes(to_double_exact(input));
  RealFft2d fft(rows, cols);
  const std::size_t spectrum = fft.spectrum_size();

  // F(S₀) per channel and the gradient MTF, both in the column-major layout.
  std::vector<std::vector<RealFft2d::Complex>> fs0(channels, std::vector<RealFft2d::Complex>(spectrum));
  for (int k = 0; k < channels; ++k) fft.forward(s[k].data(), cols, fs0[k].data());
  std::vector<double> mtf(spectrum);
  tbb::parallel_for(0, fft.spectrum_cols(), [&](int u) {
    for (int v = 0; v < rows; ++v) mtf[static_cast<std::size_t>(u) * rows + v] = gradient_mtf(v, u, rows, cols);
  });

  std::vector<Plane> h(channels, Plane(n)), v(channels, Plane(n));
  Plane divergence(n);
  const double scale = 1.0 / static_cast<double>(n);
  for (double beta = 2.0 * lambda; beta < kBetaMax; beta *= params.kappa) {
    const double threshold = lambda / beta;
    tbb::parallel_for(0, rows, [&](int y) { threshold_gradients_row(s, h, v, y, rows, cols, threshold); });
    for (int k = 0; k < channels; ++k) {
      tbb::parallel_for(0, rows, [&](int y) { divergence_row(h[k], v[k], divergence, y, rows, cols); });
      const auto& f0 = fs0[k];
      // S = Re F⁻¹[(F(S₀) + β·F(div)) / (1 + β·mtf)]
      fft.filter(divergence.data(), cols, s[k].data(), cols, scale,
                 [&](int u0, int count, RealFft2d::Complex* block) {
                   const std::size_t base = static_cast<std::size_t>(u0) * rows;
                   for (std::size_t i = 0; i < static_cast<std::size_t>(count) * rows; ++i) {
                     const RealFft2d::Complex num = f0[base + i] + beta * block[i];
                     const double den = 1.0 + beta * mtf[base + i];
                     block[i] = {num.real() / den, num.imag() / den};
                   }
                 });
    }
  }
  return from_planes(s, rows, cols);
}

namespace reference {

Image l0_smooth(const Image& input, const L0SmoothParams& params) {
  require_image(input, "l0_smooth");
  validate(params);
  const int rows = input.rows, cols = input.cols, channels = input.channels();
  const double lambda = params.lambda;
  std::vector<cv::Mat> s;
  cv::split(to_double_exact(input), s);

  std::vector<cv::Mat> fs0(channels);
  for (int k = 0; k < channels; ++k) cv::dft(s[k], fs0[k], cv::DFT_COMPLEX_OUTPUT);
  cv::Mat mtf(rows, cols, CV_64F);
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) mtf.at<double>(y, x) = gradient_mtf(y, x, rows, cols);
  }

  std::vector<cv::Mat> h(channels), v(channels);
  for (double beta = 2.0 * lambda; beta < kBetaMax; beta *= params.kappa) {
    for (int k = 0; k < channels; ++k) {
      h[k].create(rows, cols, CV_64F);
      v[k].create(rows, cols, CV_64F);
      for (int y = 0; y < rows; ++y) {
        for (int x = 0; x < cols; ++x) {
          h[k].at<double>(y, x) = s[k].at<double>(y, (x + 1) % cols) - s[k].at<double>(y, x);
          v[k].at<double>(y, x) = s[k].at<double>((y + 1) % rows, x) - s[k].at<double>(y, x);
        }
      }
    }
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) {
        double energy = 0;
        for (int k = 0; k < channels; ++k) {
          energy += h[k].at<double>(y, x) * h[k].at<double>(y, x) + v[k].at<double>(y, x) * v[k].at<double>(y, x);
        }
        if (energy < lambda / beta) {
          for (int k = 0; k < channels; ++k) h[k].at<double>(y, x) = v[k].at<double>(y, x) = 0;
        }
      }
    }
    for (int k = 0; k < channels; ++k) {
      cv::Mat div(rows, cols, CV_64F);
      for (int y = 0; y < rows; ++y) {
        for (int x = 0; x < cols; ++x) {
          div.at<double>(y, x) = (h[k].at<double>(y, (x + cols - 1) % cols) - h[k].at<double>(y, x)) +
                                 (v[k].at<double>((y + rows - 1) % rows, x) - v[k].at<double>(y, x));
        }
      }
      cv::Mat fdiv;
      cv::dft(div, fdiv, cv::DFT_COMPLEX_OUTPUT);
      for (int y = 0; y < rows; ++y) {
        for (int x = 0; x < cols; ++x) {
          const auto f0 = fs0[k].at<cv::Vec2d>(y, x);
          const auto fd = fdiv.at<cv::Vec2d>(y, x);
          const double den = 1.0 + beta * mtf.at<double>(y, x);
          fdiv.at<cv::Vec2d>(y, x) = cv::Vec2d((f0[0] + beta * fd[0]) / den, (f0[1] + beta * fd[1]) / den);
        }
      }
      cv::Mat back;
      cv::dft(fdiv, back, cv::DFT_INVERSE | cv::DFT_SCALE | cv::DFT_COMPLEX_OUTPUT);
      cv::extractChannel(back, s[k], 0);
    }
  }
  cv::Mat merged, out;
  cv::merge(s, merged);
  merged.convertTo(out, CV_32F);
  return out;
}

}  // namespace reference

OperatorEntry l0_smooth_entry() {
  OperatorEntry e;
  e.name = "l0_smooth";
  e.summary = "L0 gradient minimisation: flattens regions while keeping the strongest edges";
  e.citation =
      "L. Xu, C. Lu, Y. Xu, J. Jia, \"Image Smoothing via L0 Gradient Minimization\", ACM TOG 30(6) "
      "(SIGGRAPH Asia), 2011; matches the authors' L0Smoothing.m";
  e.kind = OperatorKind::filter;
  e.version = "1";
  e.params = l0_specs();
  e.run = [](const Image& img, const ParamValues& p, const RunContext&) {
    return l0_smooth(img, {.lambda = p.number("lambda"), .kappa = p.number("kappa")});
  };
  return e;
}

}  // namespace opforge
