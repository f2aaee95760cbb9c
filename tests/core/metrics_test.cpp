#include "opforge/core/metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "opforge/core/error.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

Image constant(int rows, int cols, int channels, float value) {
  return Image(rows, cols, CV_MAKETYPE(CV_32F, channels), cv::Scalar::all(value));
}

TEST(Metrics, PsnrOfAConstantOffsetIsExact) {
  const Image a = constant(16, 16, 3, 0.5f);
  const Image b = constant(16, 16, 3, 0.5f + 0.01f);
  const double mse = std::pow(static_cast<double>(0.5f + 0.01f) - 0.5, 2);
  EXPECT_NEAR(psnr(a, b), 10 * std::log10(1 / mse), 1e-9);
  EXPECT_NEAR(psnr(a, b), 40.0, 1e-4);
  EXPECT_TRUE(std::isinf(psnr(a, a)));
  EXPECT_NEAR(max_abs_diff(a, b), 0.01, 1e-6);
}

TEST(Metrics, SsimOfConstantImagesHasAClosedForm) {
  // Constant images: σ = 0 everywhere, so SSIM = (2μaμb + C1) / (μa² + μb² + C1).
  const double ma = 0.2, mb = 0.6, c1 = 1e-4;
  const double expected = (2 * ma * mb + c1) / (ma * ma + mb * mb + c1);
  EXPECT_NEAR(ssim(constant(20, 20, 1, static_cast<float>(ma)), constant(20, 20, 1, static_cast<float>(mb))),
              expected, 1e-6);
  const Image img = test::synthetic_image(40, 40, 3);
  EXPECT_NEAR(ssim(img, img), 1.0, 1e-12);
}

// Brute force, straight from the definition: 11×11 Gaussian window (σ = 1.5),
// replicate padding, C1 = 0.01², C2 = 0.03², mean of the map.
double brute_force_ssim(const Image& a, const Image& b) {
  double g[11], sum = 0;
  for (int i = 0; i < 11; ++i) sum += g[i] = std::exp(-(i - 5) * (i - 5) / 4.5);
  double total = 0;
  for (int y = 0; y < a.rows; ++y) {
    for (int x = 0; x < a.cols; ++x) {
      double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
      for (int dy = -5; dy <= 5; ++dy) {
        for (int dx = -5; dx <= 5; ++dx) {
          const int yy = std::clamp(y + dy, 0, a.rows - 1), xx = std::clamp(x + dx, 0, a.cols - 1);
          const double w = g[dy + 5] * g[dx + 5] / (sum * sum);
          const double va = a.at<float>(yy, xx), vb = b.at<float>(yy, xx);
          ma += w * va;
          mb += w * vb;
          saa += w * va * va;
          sbb += w * vb * vb;
          sab += w * va * vb;
        }
      }
      const double c1 = 1e-4, c2 = 9e-4;
      total += (2 * ma * mb + c1) * (2 * (sab - ma * mb) + c2) /
               ((ma * ma + mb * mb + c1) * (saa - ma * ma + sbb - mb * mb + c2));
    }
  }
  return total / (a.rows * a.cols);
}

TEST(Metrics, SsimMatchesABruteForceTranscriptionOfTheDefinition) {
  Image a = test::synthetic_image(23, 31, 1);
  Image b(a.size(), CV_32FC1);
  cv::randu(b, 0.0, 1.0);
  b = 0.7 * a + 0.3 * b;
  EXPECT_NEAR(ssim(a, b), brute_force_ssim(a, b), 1e-10);
  EXPECT_LT(ssim(a, b), 0.99);
}

TEST(Metrics, YChannelUsesMatlabRgb2ycbcrLuma) {
  const Image a = constant(8, 8, 3, 0.5f);
  Image b = a.clone();
  b.setTo(cv::Scalar(0.5, 0.6, 0.5));  // only G differs, by 0.1
  const Metrics m = compare_images(a, b, {.y_channel = true});
  const double dy = 128.553 * static_cast<double>(0.6f - 0.5f) / 255.0;
  EXPECT_NEAR(m.psnr_db, -20 * std::log10(dy), 1e-4);
  const Image luma = matlab_luma(constant(1, 1, 3, 1.0f));
  EXPECT_NEAR(luma.at<float>(0, 0), 235.0 / 255.0, 1e-6);  // white → 235
  EXPECT_THROW(compare_images(constant(4, 4, 1, 0.f), constant(4, 4, 1, 0.f), {.y_channel = true}), Error);
}

TEST(Metrics, ShaveRemovesTheBorder) {
  Image a = constant(10, 10, 1, 0.5f), b = a.clone();
  b.row(0).setTo(0.0f);
  b.col(9).setTo(1.0f);
  EXPECT_TRUE(std::isinf(compare_images(a, b, {.shave = 1}).psnr_db));
  EXPECT_FALSE(std::isinf(compare_images(a, b, {.shave = 0}).psnr_db));
  EXPECT_THROW(compare_images(a, b, {.shave = 5}), Error);
  EXPECT_THROW(compare_images(a, b, {.shave = -1}), Error);
}

TEST(Metrics, ShapeMismatchIsAnError) {
  EXPECT_THROW(psnr(constant(4, 4, 3, 0.f), constant(4, 5, 3, 0.f)), Error);
  EXPECT_THROW(psnr(constant(4, 4, 3, 0.f), constant(4, 4, 1, 0.f)), Error);
}

}  // namespace
}  // namespace opforge
