#pragma once
// The trainer's tensors: a batch of images, N×H×W×C, channels innermost (the
// layout of opforge::Image and of the model file's HWIO kernels), in float
// for training and in double for the gradient checks.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace opforge::learner {

template <typename T>
struct Tensor {
  int n = 0, h = 0, w = 0, c = 0;
  std::vector<T> data;

  Tensor() = default;
  Tensor(int n_, int h_, int w_, int c_, T fill = T(0))
      : n(n_), h(h_), w(w_), c(c_), data(static_cast<std::size_t>(n_) * h_ * w_ * c_, fill) {}

  std::size_t size() const { return data.size(); }
  std::size_t index(int b, int y, int x, int ch) const {
    return ((static_cast<std::size_t>(b) * h + y) * w + x) * c + ch;
  }
  T& at(int b, int y, int x, int ch) { return data[index(b, y, x, ch)]; }
  const T& at(int b, int y, int x, int ch) const { return data[index(b, y, x, ch)]; }
  bool same_shape(const Tensor& o) const { return n == o.n && h == o.h && w == o.w && c == o.c; }
  std::string shape_text() const {
    return std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
  }
};

/// A learned array and the gradient the backward passes accumulate into it.
template <typename T>
struct Parameter {
  std::string name;                 ///< the model file's tensor name, e.g. "g_conv1/weights"
  std::vector<std::int64_t> shape;  ///< as the model file stores it
  std::vector<T> value, grad;

  Parameter(std::string name_, std::vector<std::int64_t> shape_, std::vector<T> value_)
      : name(std::move(name_)), shape(std::move(shape_)), value(std::move(value_)), grad(value.size(), T(0)) {}
  void zero_grad() { std::fill(grad.begin(), grad.end(), T(0)); }
};

}  // namespace opforge::learner
