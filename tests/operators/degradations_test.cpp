#include "opforge/operators/degradations.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <opencv2/imgproc.hpp>

#include "golden.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/operators/registry.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using test::data_path;

// ------------------------------------------------------------ bicubic ---

// Gate from OPERATORS.md §9.1: PSNR ≥ 100 dB against the float64 reference.
constexpr double kBicubicGateDb = 100.0;

TEST(ResizeBicubicGolden, AllEightReferenceCasesArePresent) {
  EXPECT_EQ(test::golden_cases("degrade/bicubic").size(), 8u);
}

class ResizeBicubicGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ResizeBicubicGolden, MatchesMatlabImresize) {
  const test::GoldenCase c("degrade/bicubic", GetParam());
  const Image out = resize_bicubic(c.input(), {.scale = c.param("scale")});
  const auto& shape = c.sidecar.at("shape_hwc");
  ASSERT_EQ(out.rows, shape[0].get<int>());
  ASSERT_EQ(out.cols, shape[1].get<int>());
  Image compared = out;
  if (c.sidecar.contains("npy_rows")) {  // the test copy keeps bands of rows of large references
    std::vector<cv::Mat> bands;
    for (const auto& r : c.sidecar.at("npy_rows")) bands.push_back(out.rowRange(r[0].get<int>(), r[1].get<int>()));
    cv::vconcat(bands, compared);
  }
  const Image reference = read_image(data_path("conformance/degrade/bicubic/" + c.sidecar.at("npy").get<std::string>()));
  const double db = psnr(compared, reference);
  std::cout << "[ golden ] bicubic/" << c.name << ": PSNR vs float reference " << db << " dB, max abs "
            << max_abs_diff(compared, reference) << "\n";
  EXPECT_GE(db, kBicubicGateDb);
}

INSTANTIATE_TEST_SUITE_P(Conformance, ResizeBicubicGolden, ::testing::ValuesIn(test::golden_cases("degrade/bicubic")),
                         test::golden_test_name);

TEST(ResizeBicubic, OpenCvCubicIsNotMatlabBicubic) {
  const test::GoldenCase c("degrade/bicubic", "canyon256_down2");
  const Image reference = read_image(data_path("conformance/degrade/bicubic/canyon256_down2.f32.npy"));
  Image cv_out;
  cv::resize(c.input(), cv_out, reference.size(), 0, 0, cv::INTER_CUBIC);
  const double cv_db = psnr(cv_out, reference), ours_db = psnr(resize_bicubic(c.input(), {.scale = 0.5}), reference);
  std::cout << "[ info ] down2 canyon: cv::resize(INTER_CUBIC) " << cv_db << " dB, resize_bicubic " << ours_db
            << " dB against MATLAB imresize\n";
  EXPECT_LT(cv_db, 50.0) << "cv::resize is " << cv_db << " dB from MATLAB's imresize";
  EXPECT_GT(ours_db, cv_db + 50.0);
}

TEST(ResizeBicubic, SizesFollowMatlabsRule) {
  const Image img = test::synthetic_image(37, 50, 3);
  const Image third = resize_bicubic(img, {.scale = 1.0 / 3});
  EXPECT_EQ(third.rows, 13);  // ceil(37/3)
  EXPECT_EQ(third.cols, 17);  // ceil(50/3)
  const Image explicit_size = resize_bicubic(img, {.width = 20, .height = 30});
  EXPECT_EQ(explicit_size.size(), cv::Size(20, 30));
  EXPECT_EQ(resize_bicubic(test::synthetic_image(9, 9, 1), {.scale = 2.0}).type(), CV_32FC1);
}

TEST(ResizeBicubic, ConstantImageStaysConstantAndThreadsAgree) {
  const Image flat(31, 45, CV_32FC3, cv::Scalar::all(0.4));
  // Weights sum to 1, so a constant stays constant at any scale.
  for (double scale : {0.37, 2.5}) {
    const Image out = resize_bicubic(flat, {.scale = scale});
    EXPECT_LE(cv::norm(out, Image(out.size(), CV_32FC3, cv::Scalar::all(0.4)), cv::NORM_INF), 1e-6) << scale;
  }
  const Image img = test::synthetic_image(64, 61, 3);
  test::expect_bit_identical_on_1_and_2_threads([&] { return resize_bicubic(img, {.scale = 0.3}); });
}

TEST(ResizeBicubic, RejectsBadSizes) {
  const Image img = test::synthetic_image(8, 8, 3);
  EXPECT_THROW(resize_bicubic(img, {.scale = 0.0}), Error);
  EXPECT_THROW(resize_bicubic(img, {.scale = 17.0}), Error);
  EXPECT_THROW(resize_bicubic(img, {.width = 10}), Error);
}

// -------------------------------------------------------------- noise ---

TEST(GaussianNoise, ResidualHasTheRequestedMeanAndStandardDeviation) {
  const Image flat(256, 256, CV_32FC3, cv::Scalar::all(0.5));
  const double sigma = 25.0;  // 0–255 scale; 0.098 on [0,1]: clipping at 0.5 ± 5σ never happens
  const Image noisy = gaussian_noise(flat, {.sigma = sigma, .clip = false, .quantize = false}, 7);
  const double n = static_cast<double>(noisy.total() * 3);
  double sum = 0, sum2 = 0;
  std::vector<cv::Mat> ch;
  cv::split(noisy, ch);
  for (const auto& c : ch) {
    cv::Mat r;
    c.convertTo(r, CV_64F, 1.0, -0.5);
    sum += cv::sum(r)[0];
    sum2 += r.dot(r);
  }
  const double s = sigma / 255.0, mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  EXPECT_LT(std::abs(mean), 5 * s / std::sqrt(n)) << mean;
  EXPECT_LT(std::abs(sd / s - 1), 5 / std::sqrt(2 * n)) << sd / s;
  // Channels are independent: correlation of residuals within 5/√N.
  cv::Mat r0, r1;
  ch[0].convertTo(r0, CV_64F, 1.0, -0.5);
  ch[1].convertTo(r1, CV_64F, 1.0, -0.5);
  const double corr = r0.dot(r1) / std::sqrt(r0.dot(r0) * r1.dot(r1));
  EXPECT_LT(std::abs(corr), 5 / std::sqrt(n / 3));
}

TEST(GaussianNoise, ClippingMatchesTheNormalTailWithinBinomialBounds) {
  const double c = 0.1, sigma = 50.0, s = sigma / 255.0;
  const Image flat(200, 200, CV_32FC1, cv::Scalar::all(c));
  const Image noisy = gaussian_noise(flat, {.sigma = sigma, .clip = true, .quantize = false}, 3);
  double lo, hi;
  cv::minMaxLoc(noisy, &lo, &hi);
  EXPECT_GE(lo, 0.0);
  EXPECT_LE(hi, 1.0);
  const double n = static_cast<double>(noisy.total());
  const double clipped = cv::countNonZero(noisy == 0.0f) + cv::countNonZero(noisy == 1.0f);
  const auto phi = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  const double p = phi(-c / s) + phi((c - 1) / s);
  EXPECT_NEAR(clipped / n, p, 5 * std::sqrt(p * (1 - p) / n));
  const Image unclipped = gaussian_noise(flat, {.sigma = sigma, .clip = false, .quantize = false}, 3);
  cv::minMaxLoc(unclipped, &lo, &hi);
  EXPECT_LT(lo, 0.0);  // values outside [0,1] do occur without clipping
}

TEST(GaussianNoise, QuantisedOutputIsOnThe8BitLattice) {
  const Image img = test::synthetic_image(40, 40, 3);
  EXPECT_TRUE(is_on_8bit_lattice(gaussian_noise(img, {.sigma = 15.0}, 1)));
  EXPECT_EQ(gaussian_noise(img, {.sigma = 15.0, .mode = NoiseMode::gray}, 1).channels(), 1);
}

TEST(GaussianNoise, SameSeedSameNoiseOnAnyThreadCountOtherSeedOtherNoise) {
  const Image img = test::synthetic_image(97, 61, 3);
  test::expect_bit_identical_on_1_and_2_threads([&] { return gaussian_noise(img, {.sigma = 30.0, .quantize = false}, 42); });
  EXPECT_GT(cv::norm(gaussian_noise(img, {.sigma = 30.0, .quantize = false}, 42),
                     gaussian_noise(img, {.sigma = 30.0, .quantize = false}, 43), cv::NORM_INF),
            0.05);
  EXPECT_THROW(gaussian_noise(img, {.sigma = -3.0}, 1), Error);
}

// --------------------------------------------------------------- jpeg ---

TEST(JpegGolden, AllEightReferenceCasesArePresent) { EXPECT_EQ(test::golden_cases("degrade/jpeg").size(), 8u); }

class JpegGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(JpegGolden, BytesAndDecodedPixelsAreIdentical) {
  const test::GoldenCase c("degrade/jpeg", GetParam());
  const int quality = static_cast<int>(c.param("quality"));
  const auto bytes = jpeg_encode(c.input(), {.quality = quality});
  const auto reference = read_file(data_path("conformance/degrade/jpeg/" + c.sidecar.at("jpg").get<std::string>()));
  EXPECT_EQ(bytes.size(), c.sidecar.at("jpg_bytes").get<std::size_t>());
  EXPECT_TRUE(bytes == reference) << "JPEG bytes differ from the reference (sha256 "
                                  << c.sidecar.at("jpg_sha256").get<std::string>() << ")";
  const Image decoded = jpeg_degrade(c.input(), {.quality = quality});
  const Image reference_png = read_image(data_path("conformance/degrade/jpeg/" + c.sidecar.at("png").get<std::string>()));
  EXPECT_EQ(max_abs_diff(decoded, reference_png), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Conformance, JpegGolden, ::testing::ValuesIn(test::golden_cases("degrade/jpeg")),
                         test::golden_test_name);

TEST(Jpeg, GreyModesGiveGreyscaleJpegs) {
  const Image img = read_image(data_path("conformance/inputs/carving256.png"));
  for (JpegMode mode : {JpegMode::gray, JpegMode::y}) {
    const Image out = jpeg_degrade(img, {.quality = 10, .mode = mode});
    EXPECT_EQ(out.channels(), 1);
    EXPECT_TRUE(is_on_8bit_lattice(out));
  }
  // 4:4:4 keeps more chroma than 4:2:0 at the same quality.
  EXPECT_GT(psnr(jpeg_degrade(img, {.quality = 50, .chroma_420 = false}), img),
            psnr(jpeg_degrade(img, {.quality = 50}), img));
  EXPECT_THROW(jpeg_degrade(img, {.quality = 101}), Error);
  EXPECT_THROW(jpeg_degrade(img, {.quality = 0}), Error);
}

}  // namespace
}  // namespace opforge

namespace opforge {
namespace {

// ----------------------------------------------------------- sr pairs ---

TEST(SrBicubic, ModcropsTheTargetAndMakesLrAndIlrInputs) {
  const auto& op = find_operator("sr_bicubic");
  const Image source = read_image(test::data_path("conformance/inputs/canyon256.png"));
  const ParamValues ilr = op.resolve({{"scale", "3"}});
  const Image target = op.target(source, ilr);
  EXPECT_EQ(target.size(), cv::Size(255, 255));  // 256 cropped to a multiple of 3
  const Image input = op.apply(source, ilr);
  EXPECT_EQ(input.size(), target.size());
  const Image expected = resize_bicubic(resize_bicubic(target, {.scale = 1.0 / 3}), {.width = 255, .height = 255});
  EXPECT_EQ(max_abs_diff(input, expected), 0.0);
  EXPECT_LT(psnr(input, target), 40.0);  // it is degraded

  const Image lr = op.apply(source, op.resolve({{"scale", "3"}, {"mode", "lr"}}));
  EXPECT_EQ(lr.size(), cv::Size(85, 85));
  EXPECT_EQ(op.target(source, op.resolve({{"scale", "3"}, {"modcrop", "6"}})).size(), cv::Size(252, 252));
}

TEST(SrBicubic, YModeKeepsMatlabLumaForInputAndTarget) {
  const auto& op = find_operator("sr_bicubic");
  const Image source = read_image(test::data_path("conformance/inputs/carving256.png"));
  const ParamValues y = op.resolve({{"scale", "2"}, {"channels", "y"}});
  const Image target = op.target(source, y);
  ASSERT_EQ(target.channels(), 1);
  EXPECT_NEAR(target.at<float>(0, 0), matlab_luma(source).at<float>(0, 0), 1e-6);
  EXPECT_EQ(op.apply(source, y).channels(), 1);
  EXPECT_THROW(op.resolve({{"scale", "1"}}), Error);
  EXPECT_THROW(sr_reference(test::synthetic_image(2, 2, 3), {.scale = 3}), Error);
}

}  // namespace
}  // namespace opforge
