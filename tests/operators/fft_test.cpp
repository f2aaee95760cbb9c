#include "opforge/operators/fft.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cstring>
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
  const double* in = img.ptr<double>();
  RealFft2d::Complex* out = spectrum.data();
  fft.forward(&in, cols, &out);
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

// Copies channel c of `images` into the rows filter() asks for.
RealFft2d::RowFn copy_rows(const std::vector<cv::Mat>& images) {
  return [&images](int y, double* const* row) {
    for (std::size_t c = 0; c < images.size(); ++c) {
      std::memcpy(row[c], images[c].ptr<double>(y), sizeof(double) * images[c].cols);
    }
  };
}

TEST_P(RealFft2dSizes, FilterWithIdentityReturnsEveryChannel) {
  const auto [rows, cols] = GetParam();
  const std::vector<cv::Mat> images = {random_plane(rows, cols, 7), random_plane(rows, cols, 8),
                                       random_plane(rows, cols, 9)};
  std::vector<cv::Mat> out(3);
  std::vector<double*> out_ptr(3);
  for (int c = 0; c < 3; ++c) out_ptr[c] = (out[c] = cv::Mat(rows, cols, CV_64F)).ptr<double>();
  RealFft2d fft(rows, cols, 3);
  fft.filter(copy_rows(images), out_ptr.data(), cols, 1.0 / (rows * cols), [](int, int, int, auto*) {});
  for (int c = 0; c < 3; ++c) EXPECT_LT(cv::norm(out[c], images[c], cv::NORM_INF), 1e-12) << "channel " << c;
}

TEST_P(RealFft2dSizes, FilterSeesTheSpectrumOfTheRightChannel) {
  // Zeroing the whole spectrum of channel 1 only must zero channel 1 only.
  const auto [rows, cols] = GetParam();
  const std::vector<cv::Mat> images = {random_plane(rows, cols, 1), random_plane(rows, cols, 2)};
  std::vector<cv::Mat> out(2);
  std::vector<double*> out_ptr(2);
  for (int c = 0; c < 2; ++c) out_ptr[c] = (out[c] = cv::Mat(rows, cols, CV_64F)).ptr<double>();
  RealFft2d fft(rows, cols, 2);
  fft.filter(copy_rows(images), out_ptr.data(), cols, 1.0 / (rows * cols),
             [rows = rows](int c, int, int count, RealFft2d::Complex* block) {
               if (c == 1) std::fill(block, block + static_cast<std::size_t>(count) * rows, RealFft2d::Complex(0));
             });
  EXPECT_LT(cv::norm(out[0], images[0], cv::NORM_INF), 1e-12);
  EXPECT_EQ(cv::norm(out[1], cv::NORM_INF), 0.0);
}

TEST_P(RealFft2dSizes, OneAndTwoThreadsAreBitIdentical) {
  const auto [rows, cols] = GetParam();
  const std::vector<cv::Mat> images = {random_plane(rows, cols, 11)};
  cv::Mat a(rows, cols, CV_64F), b(rows, cols, CV_64F);
  double* pa = a.ptr<double>();
  double* pb = b.ptr<double>();
  const auto halve = [](int, int, int, RealFft2d::Complex* block) { block[0] *= 0.5; };
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    RealFft2d fft(rows, cols);
    fft.filter(copy_rows(images), &pa, cols, 1.0, halve);
  }
  {
    tbb::global_control two(tbb::global_control::max_allowed_parallelism, 2);
    RealFft2d fft(rows, cols);
    fft.filter(copy_rows(images), &pb, cols, 1.0, halve);
  }
  EXPECT_EQ(std::memcmp(a.data, b.data, a.total() * sizeof(double)), 0);
}

INSTANTIATE_TEST_SUITE_P(Sizes, RealFft2dSizes,
                         ::testing::Values(std::pair{1, 1}, std::pair{2, 3}, std::pair{16, 16}, std::pair{31, 17},
                                           std::pair{64, 50}, std::pair{97, 131}, std::pair{256, 256}));

}  // namespace
}  // namespace opforge
