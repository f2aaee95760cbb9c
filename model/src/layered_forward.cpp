// The CPU forward pass for networks the streaming pass does not run (Fan et
// al.'s): whole activations layer by layer. Strided layers convolve only the
// rows they keep; a transposed layer is four stride-1 3×3 convolutions, one
// per output phase (each output pixel parity reads a 2×2 subset of the 4×4
// kernel); normalisation statistics are summed per row in float64 and the
// rows added in order, so the result does not depend on the thread count.

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "conv_kernels.hpp"
#include "opforge/core/error.hpp"
#include "opforge/model/convolution.hpp"

namespace opforge::model::detail {
namespace {

struct Activation2d {
  int h = 0, w = 0, c = 0;
  std::vector<float> data;
  Activation2d() = default;
  Activation2d(int h_, int w_, int c_) : h(h_), w(w_), c(c_), data(static_cast<std::size_t>(h_) * w_ * c_) {}
  float* row(int y) { return data.data() + static_cast<std::size_t>(y) * w * c; }
  const float* row(int y) const { return data.data() + static_cast<std::size_t>(y) * w * c; }
};

Activation2d strided_convolution(const LayerSpec& l, const LayerWeights& w, const Activation2d& x, bool vectorised) {
  LayerSpec plain = l;
  plain.stride = 1;
  const std::span<const float> bias = l.bias ? std::span<const float>(w.bias) : std::span<const float>();
  if (l.stride == 1) {
    Activation2d out(x.h, x.w, l.cout);
    convolve_rows(plain, w.kernel, bias, x.data.data(), x.h, x.w, out.data.data(), vectorised);
    return out;
  }
  // The kept rows in full, then every other column.
  const int ho = (x.h + 1) / 2, wo = (x.w + 1) / 2;
  Activation2d rows(ho, x.w, l.cout), out(ho, wo, l.cout);
  convolve_rows(plain, w.kernel, bias, x.data.data(), x.h, x.w, rows.data.data(), vectorised, 2);
  for (int y = 0; y < ho; ++y)
    for (int xo = 0; xo < wo; ++xo) std::copy_n(rows.row(y) + std::size_t(2 * xo) * l.cout, l.cout, out.row(y) + std::size_t(xo) * l.cout);
  return out;
}

}  // namespace

namespace {

// Output 2H×2W cut to out_h×out_w (the size the matching stride-2 layer took in).
Activation2d transposed_convolution(const LayerSpec& l, const LayerWeights& w, const Activation2d& x, int out_h, int out_w,
                                    bool vectorised) {
  LayerSpec phase = l;
  phase.kernel_h = phase.kernel_w = 3;
  phase.stride = 1;
  phase.transposed = false;
  const std::span<const float> bias = l.bias ? std::span<const float>(w.bias) : std::span<const float>();
  Activation2d out(out_h, out_w, l.cout), part(x.h, x.w, l.cout);
  for (int py = 0; py < 2; ++py)
    for (int px = 0; px < 2; ++px) {
      const std::vector<float> k3 = transposed_phase_kernel(w.kernel, l.cin, l.cout, py, px);
      convolve_rows(phase, k3, bias, x.data.data(), x.h, x.w, part.data.data(), vectorised);
      for (int m = 0; m < x.h && 2 * m + py < out_h; ++m)
        for (int n = 0; n < x.w && 2 * n + px < out_w; ++n) {
          std::copy_n(part.row(m) + std::size_t(n) * l.cout, l.cout, out.row(2 * m + py) + std::size_t(2 * n + px) * l.cout);
        }
    }
  return out;
}

// Per-channel scale and shift from the activation's own statistics.
void normalise(const NetworkSpec& spec, const LayerSpec& l, const LayerWeights& w, Activation2d& a) {
  const int c = a.c;
  std::vector<double> rows(static_cast<std::size_t>(a.h) * 2 * c, 0.0);
  tbb::parallel_for(tbb::blocked_range<int>(0, a.h), [&](const tbb::blocked_range<int>& r) {
    for (int y = r.begin(); y != r.end(); ++y) {
      double* s = &rows[static_cast<std::size_t>(y) * 2 * c];
      const float* v = a.row(y);
      for (int x = 0; x < a.w; ++x, v += c)
        for (int ch = 0; ch < c; ++ch) s[ch] += v[ch], s[c + ch] += double(v[ch]) * v[ch];
    }
  });
  std::vector<double> sum(c, 0.0), squares(c, 0.0);
  for (int y = 0; y < a.h; ++y)
    for (int ch = 0; ch < c; ++ch) sum[ch] += rows[std::size_t(y) * 2 * c + ch], squares[ch] += rows[std::size_t(y) * 2 * c + c + ch];
  std::vector<float> scale(c), shift(c);
  fold_normaliser(spec, l, w, sum.data(), squares.data(), double(a.h) * a.w, scale.data(), shift.data());
  tbb::parallel_for(tbb::blocked_range<int>(0, a.h), [&](const tbb::blocked_range<int>& r) {
    for (int y = r.begin(); y != r.end(); ++y) {
      float* v = a.row(y);
      for (int x = 0; x < a.w; ++x, v += c)
        for (int ch = 0; ch < c; ++ch) v[ch] = scale[ch] * v[ch] + shift[ch];
    }
  });
}

void activate(const LayerSpec& l, Activation2d& a) {
  if (l.activation == Activation::none) return;
  const float slope = l.activation == Activation::relu ? 0.0f : l.negative_slope;
  for (float& v : a.data) v = std::max(slope * v, v);
}

// The layers whose inputs a later residual connection adds.
std::set<std::string> residual_sources(const NetworkSpec& spec) {
  std::set<std::string> names;
  for (const auto& l : spec.layers) {
    if (!l.residual_from.empty()) names.insert(l.residual_from);
  }
  return names;
}

}  // namespace

bool streams(const NetworkSpec& spec) {
  for (const auto& l : spec.layers) {
    if (l.stride != 1 || l.transposed || l.normalizer == Normalizer::instance || !l.residual_from.empty() ||
        l.generated != Generated::none) {
      return false;
    }
  }
  return true;
}

double layered_peak_bytes(const NetworkSpec& spec, int rows, int cols) {
  // Simulated: the layer's input and output, the rows a strided layer
  // computes or a transposed phase holds, and the inputs kept for residuals.
  const auto sources = residual_sources(spec);
  double peak = 0, kept = 0;
  int h = rows, w = cols, c = spec.input_channels();
  std::vector<std::pair<int, int>> sizes;
  for (const auto& l : spec.layers) {
    const double in = double(h) * w * c;
    if (sources.count(l.name)) kept += in;
    double temp = 0;
    if (l.transposed) {
      temp = double(h) * w * l.cout;
      std::tie(h, w) = sizes.back();
      sizes.pop_back();
    } else if (l.stride == 2) {
      sizes.push_back({h, w});
      temp = double((h + 1) / 2) * w * l.cout;
      h = (h + 1) / 2, w = (w + 1) / 2;
    }
    const double out = double(h) * w * l.cout;
    peak = std::max(peak, in + out + temp + kept + double(h) * 2 * l.cout * 2);  // the row sums, in doubles
    c = l.cout;
  }
  return peak * sizeof(float);
}

cv::Mat layered_forward(const Model& model, const cv::Mat& input, bool vectorised) {
  const NetworkSpec& spec = model.spec();
  const auto sources = residual_sources(spec);
  Activation2d x(input.rows, input.cols, input.channels());
  for (int y = 0; y < input.rows; ++y) std::copy_n(input.ptr<float>(y), std::size_t(input.cols) * input.channels(), x.row(y));
  std::map<std::string, Activation2d> kept;
  std::vector<std::pair<int, int>> sizes;  // the inputs of the stride-2 layers not yet undone
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const LayerWeights& w = model.weights()[i];
    if (sources.count(l.name)) kept[l.name] = x;
    Activation2d y;
    if (l.transposed) {
      y = transposed_convolution(l, w, x, sizes.back().first, sizes.back().second, vectorised);
      sizes.pop_back();
    } else {
      if (l.stride == 2) sizes.push_back({x.h, x.w});
      y = strided_convolution(l, w, x, vectorised);
    }
    if (l.normalizer != Normalizer::none) normalise(spec, l, w, y);
    if (!l.residual_from.empty()) {
      const Activation2d& r = kept.at(l.residual_from);
      for (std::size_t k = 0; k < y.data.size(); ++k) y.data[k] += r.data[k];
    }
    activate(l, y);
    x = std::move(y);
  }
  cv::Mat out(x.h, x.w, CV_32FC(x.c));
  for (int y = 0; y < x.h; ++y) std::copy_n(x.row(y), std::size_t(x.w) * x.c, out.ptr<float>(y));
  return out;
}

}  // namespace opforge::model::detail

namespace opforge::model {

void fold_normaliser(const NetworkSpec& spec, const LayerSpec& l, const LayerWeights& w, const double* sum,
                     const double* squares, double count, float* scale, float* shift) {
  for (int c = 0; c < l.cout; ++c) {
    const double mean = sum[c] / count, variance = std::max(0.0, squares[c] / count - mean * mean);
    if (l.normalizer == Normalizer::adaptive_bn) {
      const double r = 1.0 / std::sqrt(variance + spec.bn_epsilon);
      scale[c] = static_cast<float>(w.w0 + w.w1 * r);
      shift[c] = static_cast<float>(w.w1 * (w.beta[c] - mean * r));
    } else {
      const double r = 1.0 / std::sqrt(variance + spec.in_epsilon);
      scale[c] = static_cast<float>(w.gamma[c] * r);
      shift[c] = static_cast<float>(w.beta[c] - w.gamma[c] * mean * r);
    }
  }
}

// The 3×3 kernel of output phase (py, px) of a 4×4 stride-2 padding-1
// transposed convolution: out[2m+py] reads x[m−1]·W[3], x[m]·W[1] (py = 0)
// or x[m]·W[2], x[m+1]·W[0] (py = 1); likewise across columns. HWIO.
int transposed_phase_tap(int parity, int tap) {
  static constexpr int kTaps[2][3] = {{3, 1, -1}, {-1, 2, 0}};
  return kTaps[parity][tap];
}

std::vector<float> transposed_phase_kernel(const std::vector<float>& kernel4, int cin, int cout, int py, int px) {
  std::vector<float> k3(static_cast<std::size_t>(9) * cin * cout, 0.0f);
  const std::size_t block = static_cast<std::size_t>(cin) * cout;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      const int ky = transposed_phase_tap(py, a), kx = transposed_phase_tap(px, b);
      if (ky < 0 || kx < 0) continue;
      std::copy_n(&kernel4[static_cast<std::size_t>(ky * 4 + kx) * block], block, &k3[static_cast<std::size_t>(a * 3 + b) * block]);
    }
  return k3;
}

}  // namespace opforge::model
