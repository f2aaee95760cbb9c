#pragma once
// Random networks of every layer kind the executors run, and random inputs:
// shared by the CPU and Vulkan executor suites.

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "opforge/model/model.hpp"

namespace opforge::test {

using model::LayerSpec;
using model::LayerWeights;
using model::Model;
using model::NetworkSpec;

// A network of random weights: every layer kind the CPU executor runs.
inline Model random_model(const std::vector<LayerSpec>& layers, int image_channels, int planes, unsigned seed) {
  NetworkSpec spec;
  spec.architecture = "test";
  spec.image_channels = image_channels;
  for (int p = 0; p < planes; ++p) spec.planes.push_back(model::InputPlane::unmapped("plane" + std::to_string(p)));
  spec.layers = layers;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<LayerWeights> weights;
  for (const auto& l : layers) {
    LayerWeights w;
    const float scale = 1.0f / std::sqrt(float(l.kernel_h * l.kernel_w * l.cin));
    w.kernel.resize(static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout);
    for (auto& v : w.kernel) v = normal(rng) * scale;
    if (l.bias) {
      w.bias.resize(l.cout);
      for (auto& v : w.bias) v = 0.1f * normal(rng);
    }
    if (l.normalizer == model::Normalizer::adaptive_bn) {
      w.w0 = 1.0f + 0.3f * normal(rng);
      w.w1 = 0.5f + 0.3f * normal(rng);
      w.beta.resize(l.cout);
      for (auto& v : w.beta) v = 0.1f * normal(rng);
    }
    if (l.normalizer == model::Normalizer::instance) {
      w.gamma.resize(l.cout);
      w.beta.resize(l.cout);
      for (auto& v : w.gamma) v = 1.0f + 0.3f * normal(rng);
      for (auto& v : w.beta) v = 0.1f * normal(rng);
    }
    weights.push_back(std::move(w));
  }
  return Model(spec, weights, "random");
}

inline LayerSpec conv(const std::string& name, int k, int cin, int cout, int dilation, bool normalised, bool bias = false,
               model::Activation act = model::Activation::leaky_relu) {
  LayerSpec l;
  l.name = name;
  l.kernel_h = l.kernel_w = k;
  l.cin = cin;
  l.cout = cout;
  l.dilation = dilation;
  l.bias = bias;
  l.normalizer = normalised ? model::Normalizer::adaptive_bn : model::Normalizer::none;
  l.activation = act;
  return l;
}

// CAN-shaped, small: widths that exercise every chunk size (3..32 channels,
// 40 = one 32-chunk plus one 8-chunk), dilations beyond the image, in-place
// and two-buffer layers, a 5x5 kernel, ReLU and no activation.
inline Model mixed_model(int width, unsigned seed) {
  return random_model({conv("a", 3, 5, width, 1, true), conv("b", 3, width, width, 2, true),
                       conv("c", 3, width, width, 16, true), conv("d", 5, width, 40, 3, true, true, model::Activation::relu),
                       conv("e", 1, 40, width, 1, false, true, model::Activation::none), conv("f", 3, width, width, 64, true),
                       conv("last", 1, width, 3, 1, false, true, model::Activation::none)},
                      3, 2, seed);
}

// Fan-shaped, small: a stride-2 layer, instance norms, a residual block with
// dilation, a transposed layer that undoes the stride, ReLU everywhere.
inline Model fan_shaped_model(int width, unsigned seed) {
  auto in = [](LayerSpec l) {
    l.normalizer = model::Normalizer::instance;
    l.activation = model::Activation::relu;
    return l;
  };
  LayerSpec down = in(conv("down", 3, width, width, 1, false));
  down.stride = 2;
  LayerSpec res_b = in(conv("res_b", 3, width, width, 2, false));
  res_b.residual_from = "res_a";
  LayerSpec up = in(conv("up", 3, width, width, 1, false));
  up.kernel_h = up.kernel_w = 4;
  up.stride = 2;
  up.transposed = true;
  return random_model({in(conv("first", 3, 4, width, 1, false)), down, in(conv("res_a", 3, width, width, 2, false)), res_b, up,
                       conv("last", 3, width, 3, 1, false, false, model::Activation::relu)},
                      3, 1, seed);
}

inline cv::Mat random_input(int rows, int cols, int channels, unsigned seed) {
  cv::Mat input(rows, cols, CV_32FC(channels));
  cv::RNG rng(seed);
  rng.fill(input, cv::RNG::UNIFORM, 0.0, 1.0);
  return input;
}

}  // namespace opforge::test
