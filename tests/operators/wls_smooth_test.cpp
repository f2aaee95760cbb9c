#include "opforge/operators/wls_smooth.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "golden.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/metrics.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

// Gate from OPERATORS.md §2: PSNR ≥ 60 dB against the authors' output.
constexpr double kGoldenPsnrDb = 60.0;

TEST(WlsSmoothGolden, AllSixReferenceCasesArePresent) { EXPECT_EQ(test::golden_cases("wls").size(), 6u); }

class WlsSmoothGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(WlsSmoothGolden, MatchesTheAuthorsOutput) {
  const test::GoldenCase c("wls", GetParam());
  c.expect_matches(wls_smooth(c.input(), {.lambda = c.param("lambda"), .alpha = 1.2}), kGoldenPsnrDb);
}

INSTANTIATE_TEST_SUITE_P(Conformance, WlsSmoothGolden, ::testing::ValuesIn(test::golden_cases("wls")),
                         test::golden_test_name);

Image crop_of_carving(int rows, int cols) {
  return read_image(data_path("conformance/inputs/carving256.png"))(cv::Rect(7, 11, cols, rows)).clone();
}

TEST(WlsSmooth, ConstantImageStaysConstant) {
  for (int channels : {1, 3}) {
    const Image flat(23, 31, CV_MAKETYPE(CV_32F, channels), cv::Scalar::all(0.6));
    EXPECT_LE(cv::norm(wls_smooth(flat, {.lambda = 5.0}), flat, cv::NORM_INF), 1e-6) << channels;
  }
}

TEST(WlsSmooth, VanishingLambdaReturnsTheInput) {
  const Image img = crop_of_carving(40, 50);
  EXPECT_LE(max_abs_diff(wls_smooth(img, {.lambda = 1e-7}), img), 1e-4);
}

TEST(WlsSmooth, OneAndTwoThreadsAreBitIdentical) {
  const Image img = crop_of_carving(61, 77);
  test::expect_bit_identical_on_1_and_2_threads([&] { return wls_smooth(img, {.lambda = 1.0}); });
}

TEST(WlsSmooth, CholeskyMatchesTheEigenReferenceGreyAndColour) {
  const Image colour = crop_of_carving(48, 64);
  Image grey;
  cv::extractChannel(colour, grey, 0);
  for (const Image& img : {colour, grey}) {
    for (double lambda : {0.1, 10.0}) {
      EXPECT_LE(max_abs_diff(wls_smooth(img, {.lambda = lambda}), reference::wls_smooth(img, {.lambda = lambda})),
                1e-6)
          << img.channels() << " channel(s), lambda " << lambda;
    }
  }
}

TEST(WlsSmooth, SmoothsMoreAsLambdaGrows) {
  const Image img = crop_of_carving(64, 64);
  EXPECT_LT(psnr(wls_smooth(img, {.lambda = 10.0}), img), psnr(wls_smooth(img, {.lambda = 0.1}), img));
}

TEST(WlsSmooth, RejectsOutOfRangeParametersAndImpossibleSizes) {
  const Image img = test::synthetic_image(8, 8, 3);
  EXPECT_THROW(wls_smooth(img, {.lambda = 0.0}), Error);
  EXPECT_THROW(wls_smooth(img, {.lambda = 101.0}), Error);
  EXPECT_THROW(wls_smooth(img, {.lambda = 1.0, .alpha = 3.5}), Error);
  // 20000×20000×3 float32: 4.8 GB of address space, never touched — the
  // memory estimate refuses it before a single pixel is read.
  const Image huge(20000, 20000, CV_32FC3);
  try {
    wls_smooth(huge, {});
    FAIL() << "expected an out-of-memory refusal";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("wls_smooth: the sparse solve of a 20000x20000 image needs an estimated"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GiB"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace opforge
