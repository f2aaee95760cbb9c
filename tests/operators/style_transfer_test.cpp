// Photographic style transfer has no reference output (OPERATORS.md §6), so
// these tests check what it promises: the intensity and gradient statistics of
// the result move to the model's, the model itself is a fixed point, constant
// images stay constant, and results do not depend on the thread count.

#include "opforge/operators/style_transfer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

Plane grey(const Image& img) {
  const auto p = to_double_planes(img);
  return p.size() == 3 ? gray_plane(p) : p[0];
}

Plane gradient_magnitudes(const Plane& v, int rows, int cols) {
  Plane out;
  for (int y = 0; y + 1 < rows; ++y) {
    for (int x = 0; x + 1 < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      out.push_back(std::hypot(v[i + 1] - v[i], v[i + cols] - v[i]));
    }
  }
  return out;
}

// The 1-D Wasserstein distance between two empirical distributions, from
// 1000 quantiles of each.
double wasserstein(Plane a, Plane b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  double sum = 0;
  for (int q = 0; q < 1000; ++q) {
    const double p = (q + 0.5) / 1000;
    sum += std::abs(a[static_cast<std::size_t>(p * static_cast<double>(a.size()))] -
                    b[static_cast<std::size_t>(p * static_cast<double>(b.size()))]);
  }
  return sum / 1000;
}

const Image& canyon() {
  static const Image img = read_image(data_path("conformance/inputs/canyon256.png"));
  return img;
}
const Image& carving() {
  static const Image img = read_image(data_path("conformance/inputs/carving256.png"));
  return img;
}

TEST(StyleTransfer, IntensityAndGradientStatisticsMoveToTheModels) {
  const Image out = style_transfer(canyon(), carving());
  ASSERT_EQ(out.channels(), 3);
  const Plane in_g = grey(canyon()), model = grey(carving()), out_g = grey(out);
  const double before = wasserstein(in_g, model), after = wasserstein(out_g, model);
  EXPECT_LT(after, 0.1 * before) << "intensity W1 to the model: input " << before << ", result " << after;
  const Plane gi = gradient_magnitudes(in_g, 256, 256), gm = gradient_magnitudes(model, 256, 256),
              go = gradient_magnitudes(out_g, 256, 256);
  const double g_before = wasserstein(gi, gm), g_after = wasserstein(go, gm);
  EXPECT_LT(g_after, 0.25 * g_before) << "gradient-magnitude W1 to the model: input " << g_before << ", result " << g_after;
  std::printf("canyon styled by carving, W1 to the model: intensity %.4f -> %.4f, gradient magnitude %.4f -> %.4f\n",
              before, after, g_before, g_after);
  // Either way round: the canyon's statistics transfer onto the carving too.
  const Plane back = grey(style_transfer(carving(), canyon()));
  EXPECT_LT(wasserstein(back, in_g), 0.1 * wasserstein(model, in_g));
}

TEST(StyleTransfer, TheModelIsAFixedPoint) {
  for (const Image* img : {&canyon(), &carving()}) {
    const Image g = from_double_planes({grey(*img)}, img->rows, img->cols);
    const Image out = style_transfer(g, g);
    ASSERT_EQ(out.channels(), 1);
    const double psnr = compare_images(out, g).psnr_db;
    EXPECT_GE(psnr, 45.0) << "style = input should return the input";
    std::printf("style = input: %.2f dB from the input\n", psnr);
  }
}

TEST(StyleTransfer, ColourInputGivesTheGreyResultInEveryChannel) {
  const Image out = style_transfer(canyon(), carving(), {.iterations = 1});
  std::vector<cv::Mat> ch;
  cv::split(out, ch);
  EXPECT_EQ(cv::norm(ch[0], ch[1], cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(ch[0], ch[2], cv::NORM_INF), 0.0);
}

TEST(StyleTransfer, ConstantImageStaysConstant) {
  const Image flat(64, 80, CV_32FC1, cv::Scalar(0.3));
  const Image out = style_transfer(flat, carving());
  double lo, hi;
  cv::minMaxLoc(out, &lo, &hi);
  EXPECT_EQ(lo, hi);
}

TEST(StyleTransfer, SameResultOnOneAndTwoThreads) {
  test::expect_bit_identical_on_1_and_2_threads([] { return style_transfer(canyon(), carving(), {.iterations = 2}); });
}

TEST(StyleTransfer, HistogramMatchingToItselfIsTheIdentityWithinABin) {
  const Plane v = grey(canyon());
  const Plane m = match_histogram(v, v, 0.0, 1.0);
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_NEAR(m[i], v[i], 1.0 / 256) << i;
  // Matching to a model gives the model's quantiles.
  const Plane to_model = match_histogram(v, grey(carving()), 0.0, 1.0);
  EXPECT_LT(wasserstein(to_model, grey(carving())), 2.0 / 256);
}

TEST(StyleTransfer, RejectsBadParameters) {
  EXPECT_THROW(style_transfer(canyon(), carving(), {.iterations = 0}), Error);
  EXPECT_THROW(style_transfer(canyon(), carving(), {.samples = 1}), Error);
  EXPECT_THROW(style_transfer(canyon(), Image()), Error);
}

}  // namespace
}  // namespace opforge
