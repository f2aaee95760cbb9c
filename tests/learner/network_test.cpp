// The trainable network against the model library: the same forward as the
// CPU executor on the published files, the same file back, and Chen et al.'s
// identity initialisation.

#include "opforge/learner/network.hpp"

#include <gtest/gtest.h>

#include <random>

#include "opforge/core/io.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "test_support.hpp"

namespace opforge::learner {
namespace {

Tensor<float> tensor_from(const cv::Mat& planes) {
  Tensor<float> t(1, planes.rows, planes.cols, planes.channels());
  std::memcpy(t.data.data(), planes.ptr<float>(), t.size() * sizeof(float));
  return t;
}

cv::Mat photo_crop(int rows, int cols) {
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  return photo(cv::Rect(640, 400, cols, rows)).clone();
}

TEST(LearnerNetwork, ForwardIsTheCpuExecutorsOnThePublishedModels) {
  for (const std::string name : {"L0_smoothing", "parameterized_L0_smoothing", "combined"}) {
    SCOPED_TRACE(name);
    const model::Model m = model::Model::load(test::data_path("models/" + name + ".safetensors"));
    std::vector<float> planes(m.spec().planes.size(), 0.0f);
    if (!planes.empty()) planes[0] = 1.0f;
    const cv::Mat input = model::network_input(m, photo_crop(45, 70), planes);
    const cv::Mat expected = model::CpuExecutor().forward(m, input);
    Network net(m);
    const Tensor<float> out = net.forward(tensor_from(input));
    ASSERT_EQ(out.size(), expected.total() * 3);
    double worst = 0;
    for (std::size_t i = 0; i < out.size(); ++i) worst = std::max(worst, double(std::abs(out.data[i] - expected.ptr<float>()[i])));
    EXPECT_LT(worst, 1e-5);
  }
}

// A small Fan et al. network (width 8) with random generated weights.
model::Model small_fan(const std::string& variant, unsigned seed) {
  model::InputPlane lambda;
  lambda.name = "lambda";
  lambda.param = "lambda";
  lambda.min = lambda.param_lo = 0.002;
  lambda.max = lambda.param_hi = 0.2;
  model::Model m = uniform_initialised(fan_spec(variant, {lambda}, 8), seed);
  // Instance norms away from γ = 1, β = 0 and generated parts away from 0.
  std::vector<model::LayerWeights> w = m.weights();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (auto& l : w) {
    for (auto& v : l.gamma) v += normal(rng);
    for (auto& v : l.beta) v += normal(rng);
    for (auto& v : l.gamma_from_params) v += 3 * normal(rng);
    for (auto& v : l.beta_from_params) v += 3 * normal(rng);
  }
  return model::Model(m.spec(), w, variant);
}

TEST(LearnerNetwork, FanNetworksTrainAsTheCpuExecutorRunsThem) {
  for (const std::string variant : {"fan_decoupled", "fan_cheap_tuning"}) {
    const model::Model m = small_fan(variant, 5);
    EXPECT_EQ(m.spec().input_channels(), 4);  // BGR and the edge plane; lambda feeds the weights
    EXPECT_EQ(m.spec().weight_inputs(), 1);
    EXPECT_EQ(Network(m).to_model().encode(), m.encode());
    // Odd sizes come back at their size through the stride-2 and transposed layers.
    for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{16, 16}, {17, 23}, {9, 4}}) {
      SCOPED_TRACE(variant + " " + std::to_string(rows) + "x" + std::to_string(cols));
      const Image rgb = test::synthetic_image(rows, cols, 3);
      const std::vector<float> planes = {0.05f};
      const cv::Mat input = model::network_input(m, rgb, planes);
      const cv::Mat expected = model::CpuExecutor().forward(m.specialised(planes), input);
      Network net(m);
      net.set_weight_inputs({{0.05f}});
      const Tensor<float> out = net.forward(tensor_from(input));
      ASSERT_EQ(out.h, rows);
      ASSERT_EQ(out.w, cols);
      double worst = 0, scale = 0;
      for (std::size_t i = 0; i < out.size(); ++i) {
        worst = std::max(worst, double(std::abs(out.data[i] - expected.ptr<float>()[i])));
        scale = std::max(scale, double(std::abs(expected.ptr<float>()[i])));
      }
      EXPECT_GT(scale, 1.0);  // outputs in [0, 255]: not all zero
      EXPECT_LT(worst, 1e-4 * scale);
    }
  }
  // The parameter matters: another lambda, another output.
  const model::Model m = small_fan("fan_cheap_tuning", 6);
  const Image rgb = test::synthetic_image(12, 12, 3);
  model::CpuExecutor executor;
  const std::vector<float> low = {0.01f}, high = {0.15f};
  EXPECT_GT(cv::norm(executor.run(m, rgb, low), executor.run(m, rgb, high), cv::NORM_INF), 1e-5);
}

TEST(LearnerNetwork, GivesBackTheModelItWasBuiltFrom) {
  const model::Model m = model::Model::load(test::data_path("models/combined.safetensors"));
  const model::Model again = Network(m).to_model();
  EXPECT_EQ(again.encode(), m.encode());  // weights, spec and provenance
}

TEST(LearnerNetwork, TheIdentityInitialisationPassesImagesThrough) {
  for (const std::string arch : {"can24_an", "can32_an_parameterized", "can32_an_combined"}) {
    SCOPED_TRACE(arch);
    const model::NetworkSpec spec = can_spec(arch, {"a", "b", "c"});
    const model::Model m = identity_initialised(spec);
    EXPECT_EQ(spec.receptive_field(), arch == "can24_an" ? 257 : 513);
    std::vector<float> planes(spec.planes.size(), 0.0f);
    if (!planes.empty()) planes[0] = 1.0f;
    const Image image = photo_crop(20, 31);
    const Image out = model::CpuExecutor().run(m, image, planes);
    EXPECT_EQ(cv::norm(out, image, cv::NORM_INF), 0.0);
    Network net(m);
    const Tensor<float> t = net.forward(tensor_from(model::network_input(m, image, planes)));
    const cv::Mat bgr = model::network_input(m, image, planes);
    for (int i = 0; i < 20 * 31; ++i)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(t.data[i * 3 + c], bgr.ptr<float>()[i * spec.input_channels() + c]);
  }
  // The published architectures, layer for layer.
  const auto published = model::Model::load(test::data_path("models/L0_smoothing.safetensors")).spec();
  const auto ours = can_spec("can24_an");
  ASSERT_EQ(ours.layers.size(), published.layers.size());
  for (std::size_t i = 0; i < ours.layers.size(); ++i) {
    EXPECT_EQ(ours.layers[i].name, published.layers[i].name);
    EXPECT_EQ(ours.layers[i].dilation, published.layers[i].dilation);
    EXPECT_EQ(ours.layers[i].cin, published.layers[i].cin);
    EXPECT_EQ(ours.layers[i].bias, published.layers[i].bias);
  }
  EXPECT_THROW(can_spec("can16"), Error);
}

}  // namespace
}  // namespace opforge::learner
