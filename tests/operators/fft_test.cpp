#include "opforge/operators/fft.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <opencv2/core.hpp>

namespace opforge {
namespace {

cv::Mat random_plane(int rows, int cols, int seed) {
  cv::Mat m(rows, cols, CV_64F);
  cv::RNG rng(seed);
  rng.fill(m, cv::RNG::UNIFORM, -1.0, 1.0);
  return m;
}

class RealFft2dSizes : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RealFft2dSizes, ForwardMatchesCvDft) {
  const auto [rows, cols] = GetParam();
  const cv::Mat img = random_plane(rows, cols, rows * 1000 + cols);
  RealFft2d fft(rows, cols);
  std::vector<RealFft2d::Complex> spectrum(fft.spectrum_size());
  fft.forward(img.ptr<double>(), cols, spectrum.data());
  cv::Mat expected;
  cv::dft(img, expected, cv::DFT_COMPLEX_OUTPUT);
  double worst = 0;
  for (int u = 0; u < fft.spectrum_cols(); ++u) {
    for (int v = 0; v < rows; ++v) {
      const auto e = expected.at<cv::Vec2d>(v, u);
      const auto got = spectrum[static_cast<std::size_t>(u) * rows + v];
      worst = std::max(worst, std::abs(got - RealFft2d::Complex(e[0], e[1])));
    }
  }
  EXPECT_LT(worst, 1e-10 * rows * cols);
}

TEST_P(RealFft2dSizes, FilterWithIdentityReturnsTheInput) {
  const auto [rows, cols] = GetParam();
  const cv::Mat img = random_plane(rows, cols, 7);
  cv::Mat out(rows, cols, CV_64F);
  RealFft2d fft(rows, cols);
  fft.filter(img.ptr<double>(), cols, out.ptr<double>(), cols, 1.0 / (rows * cols), [](int, int, auto*) {});
  EXPECT_LT(cv::norm(out, img, cv::NORM_INF), 1e-12);
}

TEST_P(RealFft2dSizes, OneAndTwoThreadsAreBitIdentical) {
  const auto [rows, cols] = GetParam();
  const cv::Mat img = random_plane(rows, cols, 11);
  cv::Mat a(rows, cols, CV_64F), b(rows, cols, CV_64F);
  const auto halve = [](int, int count, RealFft2d::Complex* block) {
    (void)count;
    block[0] *= 0.5;
  };
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    RealFft2d fft(rows, cols);
    fft.filter(img.ptr<double>(), cols, a.ptr<double>(), cols, 1.0, halve);
  }
  {
    tbb::global_control two(tbb::global_control::max_allowed_parallelism, 2);
    RealFft2d fft(rows, cols);
    fft.filter(img.ptr<double>(), cols, b.ptr<double>(), cols, 1.0, halve);
  }
  EXPECT_EQ(std::memcmp(a.data, b.data, a.total() * sizeof(double)), 0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RealFft2dSizes,
                         ::testing::Values(std::pair{1, 1}, std::pair{2, 3}, std::pair{16, 16}, std::pair{31, 17},
                                           std::pair{64, 50}, std::pair{97, 131}, std::pair{256, 256}));

}  // namespace
}  // namespace opforge
