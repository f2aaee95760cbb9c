#pragma once
// The naive forward pass the fast one is tested against: plain loops in
// the order the model README states them, in float or double.

#include <cmath>
#include <vector>

#include "opforge/model/model.hpp"

namespace opforge::test {

/// A plain H×W×C tensor.
template <typename T>
struct Planes {
  int rows = 0, cols = 0, channels = 0;
  std::vector<T> values;
  T& at(int y, int x, int c) { return values[(static_cast<std::size_t>(y) * cols + x) * channels + c]; }
  T at(int y, int x, int c) const { return values[(static_cast<std::size_t>(y) * cols + x) * channels + c]; }
};

template <typename T>
Planes<T> planes_from(const cv::Mat& input) {
  Planes<T> p{input.rows, input.cols, input.channels(), {}};
  p.values.resize(static_cast<std::size_t>(p.rows) * p.cols * p.channels);
  for (int y = 0; y < p.rows; ++y) {
    const float* row = input.ptr<float>(y);
    for (int i = 0; i < p.cols * p.channels; ++i) p.values[static_cast<std::size_t>(y) * p.cols * p.channels + i] = row[i];
  }
  return p;
}

/// conv (SAME zero padding, stride s, dilation d) + bias — or the
/// transposed 4×4 stride-2 padding-1 convolution by its definition (input
/// pixel i adds to outputs 2i − 1 + k), cut to the input size of the
/// stride-2 layer it undoes —, then mean and biased variance over the
/// image: adaptive bn = (y − μ)/√(σ² + ε) + β, z = w0·y + w1·bn; instance
/// z = γ·(y − μ)/√(σ² + ε) + β; then the input of `residual_from` added,
/// then the activation. Generated layers: run Model::specialised first.
template <typename T>
Planes<T> reference_forward(const model::Model& m, Planes<T> x) {
  const auto& spec = m.spec();
  std::vector<std::pair<int, int>> sizes;
  std::vector<Planes<T>> inputs;  // every layer's input, for residual_from
  for (std::size_t li = 0; li < spec.layers.size(); ++li) {
    const auto& l = spec.layers[li];
    const auto& w = m.weights()[li];
    inputs.push_back(x);
    const auto kernel = [&](int ky, int kx, int i, int o) {
      return T(w.kernel[((static_cast<std::size_t>(ky) * l.kernel_w + kx) * l.cin + i) * l.cout + o]);
    };
    Planes<T> y;
    if (l.transposed) {
      const auto [oh, ow] = sizes.back();
      sizes.pop_back();
      y = Planes<T>{oh, ow, l.cout, std::vector<T>(static_cast<std::size_t>(oh) * ow * l.cout, T(0))};
      for (int r = 0; r < y.rows; ++r)
        for (int c = 0; c < y.cols; ++c)
          for (int o = 0; o < l.cout; ++o) y.at(r, c, o) = l.bias ? T(w.bias[o]) : T(0);
      for (int iy = 0; iy < x.rows; ++iy)
        for (int ix = 0; ix < x.cols; ++ix)
          for (int ky = 0; ky < 4; ++ky)
            for (int kx = 0; kx < 4; ++kx) {
              const int oy = 2 * iy - 1 + ky, ox = 2 * ix - 1 + kx;
              if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
              for (int i = 0; i < l.cin; ++i)
                for (int o = 0; o < l.cout; ++o) y.at(oy, ox, o) += x.at(iy, ix, i) * kernel(ky, kx, i, o);
            }
    } else {
      if (l.stride == 2) sizes.push_back({x.rows, x.cols});
      const int ho = (x.rows + l.stride - 1) / l.stride, wo = (x.cols + l.stride - 1) / l.stride;
      y = Planes<T>{ho, wo, l.cout, std::vector<T>(static_cast<std::size_t>(ho) * wo * l.cout, T(0))};
      for (int r = 0; r < ho; ++r) {
        for (int c = 0; c < wo; ++c) {
          for (int o = 0; o < l.cout; ++o) {
            T sum = l.bias ? T(w.bias[o]) : T(0);
            for (int ky = 0; ky < l.kernel_h; ++ky) {
              const int iy = r * l.stride + (ky - l.kernel_h / 2) * l.dilation;
              if (iy < 0 || iy >= x.rows) continue;
              for (int kx = 0; kx < l.kernel_w; ++kx) {
                const int ix = c * l.stride + (kx - l.kernel_w / 2) * l.dilation;
                if (ix < 0 || ix >= x.cols) continue;
                for (int i = 0; i < l.cin; ++i) sum += x.at(iy, ix, i) * kernel(ky, kx, i, o);
              }
            }
            y.at(r, c, o) = sum;
          }
        }
      }
    }
    const double n = double(y.rows) * y.cols;
    const bool normalised = l.normalizer != model::Normalizer::none;
    const double eps = l.normalizer == model::Normalizer::instance ? spec.in_epsilon : spec.bn_epsilon;
    for (int o = 0; o < l.cout; ++o) {
      double mean = 0, variance = 0;
      if (normalised) {
        for (int r = 0; r < y.rows; ++r)
          for (int c = 0; c < y.cols; ++c) mean += double(y.at(r, c, o));
        mean /= n;
        for (int r = 0; r < y.rows; ++r)
          for (int c = 0; c < y.cols; ++c) variance += (double(y.at(r, c, o)) - mean) * (double(y.at(r, c, o)) - mean);
        variance /= n;
      }
      const T mu = T(mean), inv = T(1.0 / std::sqrt(variance + eps));
      for (int r = 0; r < y.rows; ++r) {
        for (int c = 0; c < y.cols; ++c) {
          T z = y.at(r, c, o);
          if (l.normalizer == model::Normalizer::adaptive_bn) {
            const T bn = (z - mu) * inv + T(w.beta[o]);
            z = T(w.w0) * z + T(w.w1) * bn;
          } else if (l.normalizer == model::Normalizer::instance) {
            z = T(w.gamma[o]) * (z - mu) * inv + T(w.beta[o]);
          }
          y.at(r, c, o) = z;
        }
      }
    }
    if (!l.residual_from.empty()) {
      std::size_t from = 0;
      for (std::size_t j = 0; j <= li; ++j) {
        if (spec.layers[j].name == l.residual_from) from = j;
      }
      for (std::size_t k = 0; k < y.values.size(); ++k) y.values[k] += inputs[from].values[k];
    }
    for (T& z : y.values) {
      if (l.activation == model::Activation::leaky_relu) z = std::max(T(l.negative_slope) * z, z);
      if (l.activation == model::Activation::relu) z = std::max(T(0), z);
    }
    x = std::move(y);
  }
  return x;
}

}  // namespace opforge::test
