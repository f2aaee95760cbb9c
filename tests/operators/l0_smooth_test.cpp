#include "opforge/operators/l0_smooth.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "golden.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

// Gate from OPERATORS.md §1: PSNR ≥ 60 dB against the authors' output.
constexpr double kGoldenPsnrDb = 60.0;

TEST(L0SmoothGolden, AllSixReferenceCasesArePresent) { EXPECT_EQ(test::golden_cases("l0").size(), 6u); }

class L0SmoothGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(L0SmoothGolden, MatchesTheAuthorsOutput) {
  const test::GoldenCase c("l0", GetParam());
  c.expect_matches(l0_smooth(c.input(), {.lambda = c.param("lambda"), .kappa = 2.0}), kGoldenPsnrDb);
}

INSTANTIATE_TEST_SUITE_P(Conformance, L0SmoothGolden, ::testing::ValuesIn(test::golden_cases("l0")),
                         test::golden_test_name);

TEST(L0Smooth, ConstantImageStaysConstant) {
  for (int channels : {1, 3}) {
    const Image flat(40, 33, CV_MAKETYPE(CV_32F, channels), cv::Scalar::all(0.37));
    const Image out = l0_smooth(flat, {.lambda = 0.02});
    EXPECT_LE(cv::norm(out, flat, cv::NORM_INF), 1e-6) << channels << " channel(s)";
  }
}

TEST(L0Smooth, OneAndTwoThreadsAreBitIdentical) {
  // Odd sizes exercise the FFT's tail columns.
  const Image img = read_image(data_path("conformance/inputs/carving256.png"))(cv::Rect(3, 5, 201, 157)).clone();
  test::expect_bit_identical_on_1_and_2_threads([&] { return l0_smooth(img, {.lambda = 0.01}); });
}

TEST(L0Smooth, OutputHasTheInputsSizeAndType) {
  for (int channels : {1, 3}) {
    const Image img = test::synthetic_image(29, 47, channels);
    const Image out = l0_smooth(img);
    EXPECT_EQ(out.size(), img.size());
    EXPECT_EQ(out.type(), img.type());
  }
}

TEST(L0Smooth, MatchesThePlainReferenceImplementationGreyAndColour) {
  const Image colour = read_image(data_path("conformance/inputs/canyon256.png"))(cv::Rect(0, 0, 96, 80)).clone();
  Image grey;
  cv::extractChannel(colour, grey, 1);
  for (const Image& img : {colour, grey}) {
    for (double lambda : {0.005, 0.05}) {
      const Image plain = reference::l0_smooth(img, {.lambda = lambda});
      // The optimised solver in float64: only the FFT's rounding differs.
      const Image fast_double = reference::l0_smooth_double(img, {.lambda = lambda});
      EXPECT_LE(max_abs_diff(fast_double, plain), 1e-5) << img.channels() << " channel(s), lambda " << lambda;
      // The operator (float32 solver): a few hard decisions near the
      // threshold can flip, so the bound is on the error energy and size.
      const Image fast = l0_smooth(img, {.lambda = lambda});
      const double db = psnr(fast, plain);
      std::cout << "[ l0 float32 ] " << img.channels() << " channel(s), lambda " << lambda << ": " << db
                << " dB, max abs " << max_abs_diff(fast, plain) << " vs the float64 reference\n";
      EXPECT_GE(db, 80.0) << img.channels() << " channel(s), lambda " << lambda;
      EXPECT_LE(max_abs_diff(fast, plain), 1e-3) << img.channels() << " channel(s), lambda " << lambda;
    }
  }
}

TEST(L0Smooth, LargerLambdaSmoothsMore) {
  const Image img = read_image(data_path("conformance/inputs/carving256.png"));
  const auto gradient_energy = [](const Image& m) {
    cv::Mat dx;
    cv::Sobel(m, dx, CV_32F, 1, 0);
    return cv::norm(dx, cv::NORM_L1);
  };
  const double weak = gradient_energy(l0_smooth(img, {.lambda = 0.002}));
  const double strong = gradient_energy(l0_smooth(img, {.lambda = 0.2}));
  EXPECT_LT(strong, 0.5 * weak);
}

TEST(L0Smooth, RejectsOutOfRangeParameters) {
  const Image img = test::synthetic_image(8, 8, 3);
  EXPECT_THROW(l0_smooth(img, {.lambda = 0.0}), Error);
  EXPECT_THROW(l0_smooth(img, {.lambda = 1.5}), Error);
  EXPECT_THROW(l0_smooth(img, {.lambda = 0.02, .kappa = 1.0}), Error);
  EXPECT_THROW(l0_smooth(Image(), {}), Error);
}

}  // namespace
}  // namespace opforge
