// The trainable network against the model library: the same forward as the
// CPU executor on the published files, the same file back, and Chen et al.'s
// identity initialisation.

#include "opforge/learner/network.hpp"

#include <gtest/gtest.h>

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
