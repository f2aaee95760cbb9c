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

/// conv (SAME zero padding, stride 1, dilation d) + bias, then mean and
/// biased variance over the image, bn = (y − μ)/√(σ² + ε) + β,
/// z = w0·y + w1·bn, then the activation.
template <typename T>
Planes<T> reference_forward(const model::Model& m, Planes<T> x) {
  const auto& spec = m.spec();
  for (std::size_t li = 0; li < spec.layers.size(); ++li) {
    const auto& l = spec.layers[li];
    const auto& w = m.weights()[li];
    Planes<T> y{x.rows, x.cols, l.cout, std::vector<T>(static_cast<std::size_t>(x.rows) * x.cols * l.cout, T(0))};
    for (int r = 0; r < x.rows; ++r) {
      for (int c = 0; c < x.cols; ++c) {
        for (int o = 0; o < l.cout; ++o) {
          T sum = l.bias ? T(w.bias[o]) : T(0);
          for (int ky = 0; ky < l.kernel_h; ++ky) {
            const int iy = r + (ky - l.kernel_h / 2) * l.dilation;
            if (iy < 0 || iy >= x.rows) continue;
            for (int kx = 0; kx < l.kernel_w; ++kx) {
              const int ix = c + (kx - l.kernel_w / 2) * l.dilation;
              if (ix < 0 || ix >= x.cols) continue;
              for (int i = 0; i < l.cin; ++i) {
                sum += x.at(iy, ix, i) * T(w.kernel[((static_cast<std::size_t>(ky) * l.kernel_w + kx) * l.cin + i) * l.cout + o]);
              }
            }
          }
          y.at(r, c, o) = sum;
        }
      }
    }
    const double n = double(x.rows) * x.cols;
    for (int o = 0; o < l.cout; ++o) {
      double mean = 0, variance = 0;
      if (l.normalizer == model::Normalizer::adaptive_bn) {
        for (int r = 0; r < y.rows; ++r)
          for (int c = 0; c < y.cols; ++c) mean += double(y.at(r, c, o));
        mean /= n;
        for (int r = 0; r < y.rows; ++r)
          for (int c = 0; c < y.cols; ++c) variance += (double(y.at(r, c, o)) - mean) * (double(y.at(r, c, o)) - mean);
        variance /= n;
      }
      const T mu = T(mean), inv = T(1.0 / std::sqrt(variance + spec.bn_epsilon));
      for (int r = 0; r < y.rows; ++r) {
        for (int c = 0; c < y.cols; ++c) {
          T z = y.at(r, c, o);
          if (l.normalizer == model::Normalizer::adaptive_bn) {
            const T bn = (z - mu) * inv + T(w.beta[o]);
            z = T(w.w0) * z + T(w.w1) * bn;
          }
          if (l.activation == model::Activation::leaky_relu) z = std::max(T(l.negative_slope) * z, z);
          if (l.activation == model::Activation::relu) z = std::max(T(0), z);
          y.at(r, c, o) = z;
        }
      }
    }
    x = std::move(y);
  }
  return x;
}

}  // namespace opforge::test
