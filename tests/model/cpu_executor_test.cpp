#include "opforge/model/cpu_executor.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <random>

#include "opforge/core/io.hpp"
#include "model_fixtures.hpp"
#include "random_models.hpp"
#include "reference_forward.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using model::CpuExecutor;
using model::LayerSpec;
using model::LayerWeights;
using model::Model;
using model::NetworkSpec;

using test::fan_shaped_model;
using test::mixed_model;
using test::random_input;

double max_abs_vs(const cv::Mat& fast, const test::Planes<double>& ref) {
  double worst = 0;
  const float* f = fast.ptr<float>();
  for (std::size_t i = 0; i < ref.values.size(); ++i) worst = std::max(worst, std::abs(double(f[i]) - ref.values[i]));
  return worst;
}

TEST(CpuExecutor, MatchesTheNaiveForwardOnRandomNetworksAndOddSizes) {
  const std::vector<std::pair<int, int>> sizes = {{1, 1}, {2, 3}, {3, 517}, {37, 29}, {70, 5}, {1, 40}};
  for (int width : {3, 8, 24, 32}) {
    const Model m = mixed_model(width, 100 + width);
    for (const auto& [rows, cols] : sizes) {
      SCOPED_TRACE("width " + std::to_string(width) + ", " + std::to_string(rows) + "x" + std::to_string(cols));
      const cv::Mat input = random_input(rows, cols, m.spec().input_channels(), rows * 1000 + cols);
      const auto ref = test::reference_forward(m, test::planes_from<double>(input));
      for (auto kernels : {CpuExecutor::Kernels::automatic, CpuExecutor::Kernels::portable}) {
        CpuExecutor executor(kernels);
        const cv::Mat out = executor.forward(m, input);
        ASSERT_EQ(out.rows, rows);
        ASSERT_EQ(out.cols, cols);
        ASSERT_EQ(out.channels(), 3);
        // float32 against float64 through seven layers with per-image
        // normalisation: well inside 1e-4 on values of order 1.
        EXPECT_LT(max_abs_vs(out, ref), 1e-4) << executor.name();
      }
    }
  }
}

TEST(CpuExecutor, RunsStridesTransposedLayersInstanceNormsAndResidualsAsTheNaiveForward) {
  // Odd sizes too: the transposed layer gives back the stride-2 layer's input size.
  const std::vector<std::pair<int, int>> sizes = {{1, 1}, {2, 3}, {5, 7}, {16, 16}, {37, 29}, {3, 70}};
  for (int width : {8, 24}) {
    const Model m = fan_shaped_model(width, 300 + width);
    for (const auto& [rows, cols] : sizes) {
      SCOPED_TRACE("width " + std::to_string(width) + ", " + std::to_string(rows) + "x" + std::to_string(cols));
      const cv::Mat input = random_input(rows, cols, m.spec().input_channels(), rows * 100 + cols);
      const auto ref = test::reference_forward(m, test::planes_from<double>(input));
      for (auto kernels : {CpuExecutor::Kernels::automatic, CpuExecutor::Kernels::portable}) {
        const cv::Mat out = CpuExecutor(kernels).forward(m, input);
        ASSERT_EQ(out.rows, rows);
        ASSERT_EQ(out.cols, cols);
        EXPECT_LT(max_abs_vs(out, ref), 1e-4);
      }
    }
  }
  const Model m = fan_shaped_model(24, 9);
  const cv::Mat input = random_input(53, 41, m.spec().input_channels(), 2);
  cv::Mat one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = CpuExecutor().forward(m, input);
  }
  two = CpuExecutor().forward(m, input);
  EXPECT_EQ(cv::norm(one, two, cv::NORM_INF), 0.0);
}

TEST(CpuExecutor, VectorAndPortableKernelsAgree) {
  if (!CpuExecutor::has_avx2()) GTEST_SKIP() << "this CPU has no AVX2+FMA: only the portable kernels run here";
  const Model m = mixed_model(24, 7);
  const cv::Mat input = random_input(41, 67, m.spec().input_channels(), 3);
  const cv::Mat a = CpuExecutor(CpuExecutor::Kernels::automatic).forward(m, input);
  const cv::Mat b = CpuExecutor(CpuExecutor::Kernels::portable).forward(m, input);
  EXPECT_LT(cv::norm(a, b, cv::NORM_INF), 1e-5);  // FMA contraction is the only difference
}

TEST(CpuExecutor, ResultDoesNotDependOnTheThreadCount) {
  const Model m = mixed_model(32, 11);
  const cv::Mat input = random_input(203, 61, m.spec().input_channels(), 5);
  cv::Mat one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = CpuExecutor().forward(m, input);
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = CpuExecutor().forward(m, input);
  }
  EXPECT_EQ(cv::norm(one, two, cv::NORM_INF), 0.0);
}

TEST(CpuExecutor, EveryPublishedModelMatchesTheFloat64Forward) {
  // A 96x128 crop of a test photo: every layer's dilation reaches past it,
  // so zero padding is exercised on every tap.
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  const Image crop = photo(cv::Rect(700, 500, 128, 96)).clone();
  for (const std::string& name : test::kPublishedModels) {
    SCOPED_TRACE(name);
    const Model m = Model::load(test::model_path(name));
    const std::vector<float> planes = test::published_test_planes(name, m);
    const cv::Mat input = model::network_input(m, crop, planes);
    const cv::Mat out = CpuExecutor().forward(m, input);
    const auto ref = test::reference_forward(m, test::planes_from<double>(input));
    EXPECT_LE(max_abs_vs(out, ref), 1e-5);
  }
}

TEST(CpuExecutor, ReproducesThePublishedCan24L0Output) {
  // The authors' published result for MIT-Adobe 000001 (1080x1627, portrait): at most
  // one level off anywhere, and at least 99.9% of values equal.
  const Model m = Model::load(test::data_path("models/L0_smoothing.safetensors"));
  const Image input = read_image(test::data_path("can24/000001_input.png"));
  const Image published = read_image(test::data_path("can24/000001_L0_smoothing_published.png"));
  const Image ours = model::quantise(m, CpuExecutor().run(m, input));
  ASSERT_EQ(ours.size(), published.size());
  const auto c = test::compare_levels(ours, published);
  EXPECT_LE(c.worst, 1);
  EXPECT_GE(c.equal_fraction, 0.999);
  RecordProperty("values_equal_percent", std::to_string(100.0 * c.equal_fraction));
}

TEST(CpuExecutor, RefusesInputItCannotRun) {
  const Model m = Model::load(test::data_path("models/L0_smoothing.safetensors"));
  CpuExecutor executor;
  EXPECT_NE(test::error_of([&] { executor.forward(m, cv::Mat(4, 4, CV_32FC(4), cv::Scalar::all(0))); })
                .find("takes 3-channel float32 input, got 4"),
            std::string::npos);
  Image grey(4, 4, CV_32FC1, cv::Scalar(0.5));
  EXPECT_NE(test::error_of([&] { executor.run(m, grey); }).find("takes 3-channel images, got 1"), std::string::npos);
  Image nan(4, 4, CV_32FC3, cv::Scalar::all(0.5));
  nan.at<cv::Vec3f>(2, 1)[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(test::error_of([&] { executor.run(m, nan); }).find("row 2, column 1, channel 1"), std::string::npos);
  // An image beyond the memory budget is refused before anything is allocated.
  EXPECT_GT(executor.peak_bytes(m.spec(), 2160, 3840), 2160.0 * 3840 * 24 * 4);
}

}  // namespace
}  // namespace opforge
