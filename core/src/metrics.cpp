#include "opforge/core/metrics.hpp"

#include <cmath>
#include <limits>
#include <opencv2/imgproc.hpp>
#include <string>

#include "opforge/core/error.hpp"

namespace opforge {
namespace {

void require_same_shape(const Image& a, const Image& b) {
  require_image(a, "the first image");
  require_image(b, "the second image");
  if (a.size() != b.size() || a.channels() != b.channels()) {
    throw Error("the images differ in shape: " + std::to_string(a.rows) + "x" + std::to_string(a.cols) + "x" +
                std::to_string(a.channels()) + " vs " + std::to_string(b.rows) + "x" + std::to_string(b.cols) + "x" +
                std::to_string(b.channels()));
  }
}

// MATLAB's ssim window: Gaussian σ = 1.5, size 2·ceil(3σ)+1 = 11, normalised.
cv::Mat gaussian_window_1d() {
  const double sigma = 1.5;
  cv::Mat k(11, 1, CV_64F);
  double sum = 0;
  for (int i = 0; i < 11; ++i) {
    const double d = i - 5;
    k.at<double>(i) = std::exp(-d * d / (2 * sigma * sigma));
    sum += k.at<double>(i);
  }
  return k / sum;
}

double ssim_single_channel(const cv::Mat& x, const cv::Mat& y) {
  static const cv::Mat k = gaussian_window_1d();
  const auto blur = [](const cv::Mat& m) {
    cv::Mat out;
    cv::sepFilter2D(m, out, CV_64F, k, k, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
    return out;
  };
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const cv::Mat mx = blur(x), my = blur(y);
  const cv::Mat sxx = blur(x.mul(x)) - mx.mul(mx);
  const cv::Mat syy = blur(y.mul(y)) - my.mul(my);
  const cv::Mat sxy = blur(x.mul(y)) - mx.mul(my);
  const cv::Mat num = (2 * mx.mul(my) + c1).mul(2 * sxy + c2);
  const cv::Mat den = (mx.mul(mx) + my.mul(my) + c1).mul(sxx + syy + c2);
  cv::Mat map;
  cv::divide(num, den, map);
  return cv::mean(map)[0];
}

}  // namespace

double psnr(const Image& a, const Image& b) {
  require_same_shape(a, b);
  double sum = 0;
  const int n = a.cols * a.channels();
  for (int y = 0; y < a.rows; ++y) {
    const float* pa = a.ptr<float>(y);
    const float* pb = b.ptr<float>(y);
    for (int i = 0; i < n; ++i) {
      const double d = static_cast<double>(pa[i]) - pb[i];
      sum += d * d;
    }
  }
  const double mse = sum / (static_cast<double>(a.total()) * a.channels());
  return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(1.0 / mse);
}

double max_abs_diff(const Image& a, const Image& b) {
  require_same_shape(a, b);
  double m = 0;
  const int n = a.cols * a.channels();
  for (int y = 0; y < a.rows; ++y) {
    const float* pa = a.ptr<float>(y);
    const float* pb = b.ptr<float>(y);
    for (int i = 0; i < n; ++i) m = std::max(m, std::abs(static_cast<double>(pa[i]) - pb[i]));
  }
  return m;
}

double ssim(const Image& a, const Image& b) {
  require_same_shape(a, b);
  std::vector<cv::Mat> ca, cb;
  cv::split(a, ca);
  cv::split(b, cb);
  double total = 0;
  for (std::size_t c = 0; c < ca.size(); ++c) {
    cv::Mat x, y;
    ca[c].convertTo(x, CV_64F);
    cb[c].convertTo(y, CV_64F);
    total += ssim_single_channel(x, y);
  }
  return total / static_cast<double>(ca.size());
}

Image matlab_luma(const Image& rgb) {
  if (rgb.channels() != 3) throw Error("the Y-channel comparison (--y-channel) needs RGB images, got " + std::to_string(rgb.channels()) + " channel(s)");
  Image y(rgb.rows, rgb.cols, CV_32FC1);
  for (int r = 0; r < rgb.rows; ++r) {
    const float* s = rgb.ptr<float>(r);
    float* d = y.ptr<float>(r);
    for (int x = 0; x < rgb.cols; ++x) {
      d[x] = static_cast<float>((16.0 + 65.481 * s[3 * x] + 128.553 * s[3 * x + 1] + 24.966 * s[3 * x + 2]) / 255.0);
    }
  }
  return y;
}

Metrics compare_images(const Image& a_in, const Image& b_in, const MetricOptions& options) {
  require_same_shape(a_in, b_in);
  Image a = options.y_channel ? matlab_luma(a_in) : a_in;
  Image b = options.y_channel ? matlab_luma(b_in) : b_in;
  if (options.shave < 0) throw Error("shave " + std::to_string(options.shave) + " is negative; valid: >= 0");
  if (options.shave > 0) {
    const int s = options.shave;
    if (2 * s >= a.rows || 2 * s >= a.cols) {
      throw Error("shave " + std::to_string(s) + " leaves nothing of a " + std::to_string(a.rows) + "x" +
                  std::to_string(a.cols) + " image; valid: 0.." + std::to_string((std::min(a.rows, a.cols) - 1) / 2));
    }
    const cv::Rect roi(s, s, a.cols - 2 * s, a.rows - 2 * s);
    a = a(roi).clone();
    b = b(roi).clone();
  }
  return {psnr(a, b), ssim(a, b), max_abs_diff(a, b)};
}

}  // namespace opforge
