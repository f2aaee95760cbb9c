#include "opforge/operators/dehaze.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cstring>

#include "golden.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/operators/registry.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

// Gate from OPERATORS.md §7: PSNR ≥ 80 dB (PNG and the unclipped npy), and
// the air-light identical to the reference's.
constexpr double kGoldenPsnrDb = 80.0;

TEST(DehazeDarkChannelGolden, BothReferenceCasesArePresent) {
  EXPECT_EQ(test::golden_cases("dcp_guided").size(), 2u);
}

class DehazeDarkChannelGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(DehazeDarkChannelGolden, MatchesDehazeFastAndItsAirlightExactly) {
  const test::GoldenCase c("dcp_guided", GetParam());
  const DehazeResult r = dehaze_dark_channel(c.input());
  c.expect_matches(r.radiance, kGoldenPsnrDb);
  const auto& expected = c.sidecar.at("atmosphere_rgb");
  for (int k = 0; k < 3; ++k) EXPECT_EQ(r.airlight[k], expected[k].get<double>()) << "channel " << k;
}

INSTANTIATE_TEST_SUITE_P(Conformance, DehazeDarkChannelGolden, ::testing::ValuesIn(test::golden_cases("dcp_guided")),
                         test::golden_test_name);

TEST(DehazeDarkChannel, ConstantImageStaysConstant) {
  const Image flat(40, 45, CV_32FC3, cv::Scalar(0.7, 0.6, 0.5));
  const DehazeResult r = dehaze_dark_channel(flat);
  EXPECT_LE(cv::norm(r.radiance, flat, cv::NORM_INF), 1e-6);
  EXPECT_NEAR(r.airlight[0], static_cast<double>(0.7f), 1e-12);
}

TEST(DehazeDarkChannel, OneAndTwoThreadsAreBitIdentical) {
  const Image img = read_image(data_path("conformance/inputs/canyon256.png"))(cv::Rect(0, 0, 131, 97)).clone();
  Image one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = dehaze_dark_channel(img).radiance;
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = dehaze_dark_channel(img).radiance;
  }
  EXPECT_EQ(std::memcmp(one.data, two.data, one.total() * one.elemSize()), 0);
}

TEST(DehazeDarkChannel, SmallImagesWorkWithClippedWindows) {
  // The reference needs H, W ≥ 31; clipped windows have no such limit.
  const Image img = test::synthetic_image(9, 12, 3);
  const DehazeResult r = dehaze_dark_channel(img);
  EXPECT_EQ(r.radiance.size(), img.size());
  EXPECT_EQ(r.transmission.type(), CV_32FC1);
}

TEST(DehazeDarkChannel, RegistryWritesTheTransmissionOnRequest) {
  const auto& op = find_operator("dehaze_dark_channel");
  const Image img = test::synthetic_image(32, 32, 3);
  EXPECT_EQ(op.apply(img, op.resolve({{"output", "transmission"}})).channels(), 1);
  EXPECT_EQ(op.apply(img, op.resolve({})).channels(), 3);
}

TEST(DehazeDarkChannel, RejectsBadInput) {
  EXPECT_THROW(dehaze_dark_channel(test::synthetic_image(8, 8, 1)), Error);
  EXPECT_THROW(dehaze_dark_channel(test::synthetic_image(8, 8, 3), {.window = 16}), Error);
  EXPECT_THROW(dehaze_dark_channel(test::synthetic_image(8, 8, 3), {.omega = 0.0}), Error);
}

}  // namespace
}  // namespace opforge
