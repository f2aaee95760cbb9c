#include "opforge/operators/rtv_smooth.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "golden.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/metrics.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

// Gate from OPERATORS.md §3: PSNR ≥ 60 dB against the authors' output, for
// both branches of their tsmooth.m.
constexpr double kGoldenPsnrDb = 60.0;

TEST(RtvSmoothGolden, AllReferenceCasesArePresent) {
  EXPECT_EQ(test::golden_cases("rtv").size(), 6u);
  EXPECT_EQ(test::golden_cases("rtv_direct").size(), 6u);
}

class RtvSmoothGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(RtvSmoothGolden, PcgMatchesTheAuthorsMatlabBranch) {
  const test::GoldenCase c("rtv", GetParam());
  RtvReport report;
  c.expect_matches(rtv_smooth(c.input(), {.lambda = c.param("lambda"), .solver = RtvSolver::pcg}, &report),
                   kGoldenPsnrDb);
  ASSERT_EQ(report.pcg_iterations.size(), 4u * 3u);  // 4 outer iterations × 3 channels
  for (double r : report.pcg_relative_residuals) EXPECT_LE(r, 0.1);
}

TEST_P(RtvSmoothGolden, DirectMatchesTheAuthorsOctaveBranch) {
  const test::GoldenCase c("rtv_direct", GetParam());
  c.expect_matches(rtv_smooth(c.input(), {.lambda = c.param("lambda"), .solver = RtvSolver::direct}),
                   kGoldenPsnrDb);
}

INSTANTIATE_TEST_SUITE_P(Conformance, RtvSmoothGolden, ::testing::ValuesIn(test::golden_cases("rtv")),
                         test::golden_test_name);

TEST(RtvSmooth, TheSolverIsPartOfTheOperator) {
  // The loose PCG tolerance is what MATLAB computes: pcg and direct differ
  // by far more than either differs from its own reference.
  const test::GoldenCase c("rtv", "carving256_lambda0.01");
  const Image pcg = rtv_smooth(c.input(), {.lambda = 0.01, .solver = RtvSolver::pcg});
  const Image direct = rtv_smooth(c.input(), {.lambda = 0.01, .solver = RtvSolver::direct});
  const double db = psnr(pcg, direct);
  std::cout << "[ info ] rtv pcg vs direct: " << db << " dB\n";
  EXPECT_LT(db, 60.0);
}

Image crop_of_canyon(int rows, int cols) {
  return read_image(data_path("conformance/inputs/canyon256.png"))(cv::Rect(5, 9, cols, rows)).clone();
}

TEST(RtvSmooth, ConstantImageStaysConstant) {
  for (RtvSolver solver : {RtvSolver::pcg, RtvSolver::direct}) {
    for (int channels : {1, 3}) {
      const Image flat(21, 34, CV_MAKETYPE(CV_32F, channels), cv::Scalar::all(0.3));
      EXPECT_LE(cv::norm(rtv_smooth(flat, {.solver = solver}), flat, cv::NORM_INF), 1e-6);
    }
  }
}

TEST(RtvSmooth, VanishingLambdaReturnsTheInput) {
  const Image img = crop_of_canyon(40, 52);
  for (RtvSolver solver : {RtvSolver::pcg, RtvSolver::direct}) {
    EXPECT_LE(max_abs_diff(rtv_smooth(img, {.lambda = 1e-7, .solver = solver}), img), 1e-4);
  }
}

TEST(RtvSmooth, OneAndTwoThreadsAreBitIdentical) {
  const Image img = crop_of_canyon(57, 83);
  for (RtvSolver solver : {RtvSolver::pcg, RtvSolver::direct}) {
    test::expect_bit_identical_on_1_and_2_threads([&] { return rtv_smooth(img, {.solver = solver}); });
  }
}

TEST(RtvSmooth, GreyInputWorks) {
  Image grey;
  cv::extractChannel(crop_of_canyon(40, 40), grey, 1);
  const Image out = rtv_smooth(grey);
  EXPECT_EQ(out.type(), CV_32FC1);
  EXPECT_LT(psnr(out, grey), 60.0);  // it did smooth
}

TEST(RtvSmooth, RejectsOutOfRangeParametersAndImpossibleSizes) {
  const Image img = test::synthetic_image(8, 8, 3);
  EXPECT_THROW(rtv_smooth(img, {.lambda = 0.3}), Error);
  EXPECT_THROW(rtv_smooth(img, {.sigma = 0.0}), Error);
  EXPECT_THROW(rtv_smooth(img, {.sharpness = 0.5}), Error);
  EXPECT_THROW(rtv_smooth(img, {.iterations = 11}), Error);
  const Image huge(20000, 20000, CV_32FC3);  // address space only, never touched
  for (RtvSolver solver : {RtvSolver::pcg, RtvSolver::direct}) {
    try {
      rtv_smooth(huge, {.solver = solver});
      FAIL() << "expected an out-of-memory refusal";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("rtv_smooth: the sparse solve of a 20000x20000 image needs an estimated"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace opforge
