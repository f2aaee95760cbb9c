#include "opforge/learner/layers.hpp"

#include <tbb/parallel_for.h>

#include <cmath>
#include <memory>
#include <type_traits>

#include "opforge/model/convolution.hpp"
#include "weight_gradient.hpp"

#include "opforge/core/error.hpp"

namespace opforge::learner {
namespace {

// Rows per block of a deterministic reduction: the blocks, and the order
// their partial sums are added in, depend only on the shapes.
constexpr int kReductionRows = 8;

model::LayerSpec as_layer_spec(const ConvConfig& k, const std::string& name) {
  model::LayerSpec l;
  l.name = name;
  l.kernel_h = k.kernel_h;
  l.kernel_w = k.kernel_w;
  l.cin = k.cin;
  l.cout = k.cout;
  l.dilation = k.dilation;
  l.bias = k.bias;
  return l;
}

template <typename T>
void require_channels(const Tensor<T>& x, int channels, const char* who) {
  if (x.c != channels || x.n < 1 || x.h < 1 || x.w < 1) {
    throw Error(std::string(who) + ": input " + x.shape_text() + " does not have " + std::to_string(channels) +
                " channels");
  }
}

}  // namespace

// ---------------------------------------------------------------- Conv2d

template <typename T>
Conv2d<T>::Conv2d(const ConvConfig& config, const std::string& prefix, std::vector<T> weights, std::vector<T> bias)
    : config_(config),
      weights_(prefix + "/weights", {config.kernel_h, config.kernel_w, config.cin, config.cout}, std::move(weights)),
      bias_(prefix + "/biases", {config.cout}, config.bias ? std::move(bias) : std::vector<T>{}) {
  const std::size_t need = static_cast<std::size_t>(config.kernel_h) * config.kernel_w * config.cin * config.cout;
  if (weights_.value.size() != need) throw Error(prefix + ": " + std::to_string(weights_.value.size()) + " weights, needs " + std::to_string(need));
  if (config.bias && bias_.value.size() != static_cast<std::size_t>(config.cout)) throw Error(prefix + ": bias needs " + std::to_string(config.cout) + " values");
  if (config.stride < 1 || config.dilation < 1) throw Error(prefix + ": stride and dilation must be >= 1");
}

template <typename T>
std::vector<Parameter<T>*> Conv2d<T>::parameters() {
  if (config_.bias) return {&weights_, &bias_};
  return {&weights_};
}

template <typename T>
Tensor<T> Conv2d<T>::forward(const Tensor<T>& x) {
  const ConvConfig& k = config_;
  require_channels(x, k.cin, weights_.name.c_str());
  input_ = x;
  const int s = k.stride, d = k.dilation;
  const int ho = (x.h + s - 1) / s, wo = (x.w + s - 1) / s;
  Tensor<T> out(x.n, ho, wo, k.cout);
  if constexpr (std::is_same_v<T, float>) {
    const model::LayerSpec spec = as_layer_spec(k, weights_.name);
    if (s == 1) {  // the CPU executor's vector kernels
      for (int b = 0; b < x.n; ++b) {
        model::convolve(spec, weights_.value, bias_.value, &x.at(b, 0, 0, 0), x.h, x.w, &out.at(b, 0, 0, 0));
      }
      return out;
    }
    // Strided: the stride-1 convolution (vector kernels), every s-th pixel
    // kept; s² times the arithmetic of this layer, far less time than the loops below.
    Tensor<float> full(1, x.h, x.w, k.cout);
    for (int b = 0; b < x.n; ++b) {
      model::convolve(spec, weights_.value, bias_.value, &x.at(b, 0, 0, 0), x.h, x.w, full.data.data());
      for (int y = 0; y < ho; ++y)
        for (int ox = 0; ox < wo; ++ox) std::copy_n(&full.at(0, y * s, ox * s, 0), k.cout, &out.at(b, y, ox, 0));
    }
    return out;
  }
  const T* w = weights_.value.data();
  tbb::parallel_for(0, x.n * ho, [&](int row) {
    const int b = row / ho, y = row % ho;
    for (int ox = 0; ox < wo; ++ox) {
      T* acc = &out.at(b, y, ox, 0);
      for (int o = 0; o < k.cout; ++o) acc[o] = k.bias ? bias_.value[o] : T(0);
      for (int ky = 0; ky < k.kernel_h; ++ky) {
        const int iy = y * s + (ky - k.kernel_h / 2) * d;
        if (iy < 0 || iy >= x.h) continue;
        for (int kx = 0; kx < k.kernel_w; ++kx) {
          const int ix = ox * s + (kx - k.kernel_w / 2) * d;
          if (ix < 0 || ix >= x.w) continue;
          const T* in = &x.at(b, iy, ix, 0);
          const T* tap = w + static_cast<std::size_t>(ky * k.kernel_w + kx) * k.cin * k.cout;
          for (int i = 0; i < k.cin; ++i) {
            const T v = in[i];
            const T* wr = tap + static_cast<std::size_t>(i) * k.cout;
            for (int o = 0; o < k.cout; ++o) acc[o] += v * wr[o];
          }
        }
      }
    }
  });
  return out;
}

template <typename T>
Tensor<T> Conv2d<T>::backward(const Tensor<T>& dy) {
  const ConvConfig& k = config_;
  const Tensor<T>& x = input_;
  const int s = k.stride, d = k.dilation;
  const int ho = (x.h + s - 1) / s, wo = (x.w + s - 1) / s;
  if (dy.n != x.n || dy.h != ho || dy.w != wo || dy.c != k.cout) {
    throw Error(weights_.name + ": gradient " + dy.shape_text() + " does not match the forward output");
  }
  const int taps = k.kernel_h * k.kernel_w;
  Tensor<T> dx(x.n, x.h, x.w, k.cin);
  bool dx_done = false;
  if constexpr (std::is_same_v<T, float>) {
    {
      // d(input) is the forward convolution of the stride-1 output's
      // gradient (dy at every s-th pixel, zeros between) with the kernel
      // flipped in space and transposed in channels.
      std::vector<float> flipped(weights_.value.size());
      for (int ky = 0; ky < k.kernel_h; ++ky)
        for (int kx = 0; kx < k.kernel_w; ++kx)
          for (int i = 0; i < k.cin; ++i)
            for (int o = 0; o < k.cout; ++o)
              flipped[((static_cast<std::size_t>(ky) * k.kernel_w + kx) * k.cout + o) * k.cin + i] =
                  weights_.value[((static_cast<std::size_t>(k.kernel_h - 1 - ky) * k.kernel_w + (k.kernel_w - 1 - kx)) * k.cin + i) *
                                     k.cout + o];
      ConvConfig back = k;
      std::swap(back.cin, back.cout);
      const model::LayerSpec spec = as_layer_spec(back, weights_.name);
      if (s == 1) {
        for (int b = 0; b < x.n; ++b) model::convolve(spec, flipped, {}, &dy.at(b, 0, 0, 0), x.h, x.w, &dx.at(b, 0, 0, 0));
      } else {
        Tensor<float> spread(1, x.h, x.w, k.cout);
        for (int b = 0; b < x.n; ++b) {
          for (int y = 0; y < ho; ++y)
            for (int ox = 0; ox < wo; ++ox) std::copy_n(&dy.at(b, y, ox, 0), k.cout, &spread.at(0, y * s, ox * s, 0));
          model::convolve(spec, flipped, {}, spread.data.data(), x.h, x.w, &dx.at(b, 0, 0, 0));
        }
      }
      dx_done = true;
    }
  }
  if (!dx_done) {
    // Otherwise each input pixel gathers from the outputs that read it, with
    // each tap's weights transposed to [cout][cin] so the inner loop runs
    // over contiguous input channels.
    std::vector<T> transposed(weights_.value.size());
    for (int t = 0; t < taps; ++t)
      for (int i = 0; i < k.cin; ++i)
        for (int o = 0; o < k.cout; ++o)
          transposed[(static_cast<std::size_t>(t) * k.cout + o) * k.cin + i] =
              weights_.value[(static_cast<std::size_t>(t) * k.cin + i) * k.cout + o];
    tbb::parallel_for(0, x.n * x.h, [&](int row) {
      const int b = row / x.h, iy = row % x.h;
      for (int ix = 0; ix < x.w; ++ix) {
        T* g = &dx.at(b, iy, ix, 0);
        for (int ky = 0; ky < k.kernel_h; ++ky) {
          const int ty = iy - (ky - k.kernel_h / 2) * d;
          if (ty < 0 || ty % s != 0 || ty / s >= ho) continue;
          for (int kx = 0; kx < k.kernel_w; ++kx) {
            const int tx = ix - (kx - k.kernel_w / 2) * d;
            if (tx < 0 || tx % s != 0 || tx / s >= wo) continue;
            const T* up = &dy.at(b, ty / s, tx / s, 0);
            const T* tap = transposed.data() + static_cast<std::size_t>(ky * k.kernel_w + kx) * k.cout * k.cin;
            for (int o = 0; o < k.cout; ++o) {
              const T v = up[o];
              const T* wr = tap + static_cast<std::size_t>(o) * k.cin;
              for (int i = 0; i < k.cin; ++i) g[i] += v * wr[i];
            }
          }
        }
      }
    });
  }
  // d(weights), d(bias): partial sums over fixed blocks of output rows,
  // added in block order.
  const int blocks_per_image = (ho + kReductionRows - 1) / kReductionRows;
  const int blocks = x.n * blocks_per_image;
  const std::size_t wsize = weights_.value.size();
  std::vector<T> partial(static_cast<std::size_t>(blocks) * (wsize + k.cout), T(0));
  tbb::parallel_for(0, blocks, [&](int block) {
    const int b = block / blocks_per_image;
    const int y0 = (block % blocks_per_image) * kReductionRows, y1 = std::min(ho, y0 + kReductionRows);
    T* pw = &partial[static_cast<std::size_t>(block) * (wsize + k.cout)];
    T* pb = pw + wsize;
    for (int y = y0; y < y1; ++y) {
      if constexpr (std::is_same_v<T, float>) {
        // Each tap reads a contiguous run of output columns: one kernel call.
        for (int ox = 0; ox < wo; ++ox) {
          const T* up = &dy.at(b, y, ox, 0);
          for (int o = 0; o < k.cout; ++o) pb[o] += up[o];
        }
        for (int ky = 0; ky < k.kernel_h; ++ky) {
          const int iy = y * s + (ky - k.kernel_h / 2) * d;
          if (iy < 0 || iy >= x.h) continue;
          for (int kx = 0; kx < k.kernel_w; ++kx) {
            const int offset = (kx - k.kernel_w / 2) * d;
            // ox·s + offset must lie in [0, W).
            const int lo = offset >= 0 ? 0 : (-offset + s - 1) / s;
            const int hi = x.w - 1 - offset < 0 ? 0 : std::min(wo, (x.w - 1 - offset) / s + 1);
            if (lo >= hi) continue;
            detail::accumulate_weight_gradient(&x.at(b, iy, lo * s + offset, 0), s * k.cin, &dy.at(b, y, lo, 0), hi - lo,
                                               k.cin, k.cout,
                                               pw + static_cast<std::size_t>(ky * k.kernel_w + kx) * k.cin * k.cout);
          }
        }
        continue;
      }
      for (int ox = 0; ox < wo; ++ox) {
        const T* up = &dy.at(b, y, ox, 0);
        for (int o = 0; o < k.cout; ++o) pb[o] += up[o];
        for (int ky = 0; ky < k.kernel_h; ++ky) {
          const int iy = y * s + (ky - k.kernel_h / 2) * d;
          if (iy < 0 || iy >= x.h) continue;
          for (int kx = 0; kx < k.kernel_w; ++kx) {
            const int ix = ox * s + (kx - k.kernel_w / 2) * d;
            if (ix < 0 || ix >= x.w) continue;
            const T* in = &x.at(b, iy, ix, 0);
            T* tap = pw + static_cast<std::size_t>(ky * k.kernel_w + kx) * k.cin * k.cout;
            for (int i = 0; i < k.cin; ++i) {
              const T v = in[i];
              T* wr = tap + static_cast<std::size_t>(i) * k.cout;
              for (int o = 0; o < k.cout; ++o) wr[o] += v * up[o];
            }
          }
        }
      }
    }
  });
  for (int block = 0; block < blocks; ++block) {
    const T* pw = &partial[static_cast<std::size_t>(block) * (wsize + k.cout)];
    for (std::size_t j = 0; j < wsize; ++j) weights_.grad[j] += pw[j];
    if (k.bias)
      for (int o = 0; o < k.cout; ++o) bias_.grad[o] += pw[wsize + o];
  }
  return dx;
}

// -------------------------------------------------------- ConvTranspose2d

template <typename T>
ConvTranspose2d<T>::ConvTranspose2d(const ConvTransposeConfig& config, const std::string& prefix, std::vector<T> weights,
                                    std::vector<T> bias)
    : config_(config),
      weights_(prefix + "/weights", {config.kernel, config.kernel, config.cin, config.cout}, std::move(weights)),
      bias_(prefix + "/biases", {config.cout}, config.bias ? std::move(bias) : std::vector<T>{}) {
  const std::size_t need = static_cast<std::size_t>(config.kernel) * config.kernel * config.cin * config.cout;
  if (weights_.value.size() != need) throw Error(prefix + ": " + std::to_string(weights_.value.size()) + " weights, needs " + std::to_string(need));
  if (config.bias && bias_.value.size() != static_cast<std::size_t>(config.cout)) throw Error(prefix + ": bias needs " + std::to_string(config.cout) + " values");
  if (config.stride < 1 || config.padding < 0 || config.kernel < 1) throw Error(prefix + ": invalid kernel, stride or padding");
}

template <typename T>
std::vector<Parameter<T>*> ConvTranspose2d<T>::parameters() {
  if (config_.bias) return {&weights_, &bias_};
  return {&weights_};
}

template <typename T>
bool ConvTranspose2d<T>::phased() const {
  return std::is_same_v<T, float> && config_.kernel == 4 && config_.stride == 2 && config_.padding == 1;
}

// The 4×4 stride-2 padding-1 case in float: four stride-1 3×3 convolutions,
// one per output phase (model::transposed_phase_kernel), on the vector kernels.
template <typename T>
Tensor<T> ConvTranspose2d<T>::phase_forward(const Tensor<T>& x) {
  const auto& k = config_;
  Tensor<T> out(x.n, 2 * x.h, 2 * x.w, k.cout);
  std::vector<T> kernel4(weights_.value.begin(), weights_.value.end());
  phases_.clear();
  for (int phase = 0; phase < 4; ++phase) {
    const int py = phase / 2, px = phase % 2;
    std::vector<T> k3;
    if constexpr (std::is_same_v<T, float>) k3 = model::transposed_phase_kernel(kernel4, k.cin, k.cout, py, px);
    phases_.push_back(std::make_unique<Conv2d<T>>(ConvConfig{3, 3, k.cin, k.cout, 1, 1, false}, weights_.name, std::move(k3)));
    const Tensor<T> part = phases_.back()->forward(x);
    for (int b = 0; b < x.n; ++b)
      for (int m = 0; m < x.h; ++m)
        for (int n = 0; n < x.w; ++n) {
          T* dst = &out.at(b, 2 * m + py, 2 * n + px, 0);
          const T* src = &part.at(b, m, n, 0);
          for (int o = 0; o < k.cout; ++o) dst[o] = src[o] + (k.bias ? bias_.value[o] : T(0));
        }
  }
  return out;
}

template <typename T>
Tensor<T> ConvTranspose2d<T>::phase_backward(const Tensor<T>& dy) {
  const auto& k = config_;
  const Tensor<T>& x = input_;
  Tensor<T> dx(x.n, x.h, x.w, k.cin);
  const std::size_t block = static_cast<std::size_t>(k.cin) * k.cout;
  for (int phase = 0; phase < 4; ++phase) {
    const int py = phase / 2, px = phase % 2;
    Tensor<T> part(x.n, x.h, x.w, k.cout);
    for (int b = 0; b < x.n; ++b)
      for (int m = 0; m < x.h; ++m)
        for (int n = 0; n < x.w; ++n) std::copy_n(&dy.at(b, 2 * m + py, 2 * n + px, 0), k.cout, &part.at(b, m, n, 0));
    const Tensor<T> d = phases_[phase]->backward(part);
    for (std::size_t j = 0; j < dx.size(); ++j) dx.data[j] += d.data[j];
    const std::vector<T>& g3 = phases_[phase]->parameters()[0]->grad;
    for (int a = 0; a < 3; ++a)
      for (int c = 0; c < 3; ++c) {
        const int ky = model::transposed_phase_tap(py, a), kx = model::transposed_phase_tap(px, c);
        if (ky < 0 || kx < 0) continue;
        T* g4 = &weights_.grad[static_cast<std::size_t>(ky * 4 + kx) * block];
        const T* src = &g3[static_cast<std::size_t>(a * 3 + c) * block];
        for (std::size_t j = 0; j < block; ++j) g4[j] += src[j];
      }
  }
  phases_.clear();
  if (k.bias) {
    for (int b = 0; b < dy.n; ++b)
      for (int y = 0; y < dy.h; ++y)
        for (int xx = 0; xx < dy.w; ++xx)
          for (int o = 0; o < k.cout; ++o) bias_.grad[o] += dy.at(b, y, xx, o);
  }
  return dx;
}

template <typename T>
Tensor<T> ConvTranspose2d<T>::forward(const Tensor<T>& x) {
  const auto& k = config_;
  require_channels(x, k.cin, weights_.name.c_str());
  input_ = x;
  const int ho = out_size(x.h), wo = out_size(x.w);
  if (ho < 1 || wo < 1) throw Error(weights_.name + ": input " + x.shape_text() + " is too small");
  if (phased() && use_phases_) return phase_forward(x);
  Tensor<T> out(x.n, ho, wo, k.cout);
  // Gather: output (oy, ox) reads input (iy, ix) where oy = iy·s − p + ky.
  tbb::parallel_for(0, x.n * ho, [&](int row) {
    const int b = row / ho, oy = row % ho;
    for (int ox = 0; ox < wo; ++ox) {
      T* acc = &out.at(b, oy, ox, 0);
      for (int o = 0; o < k.cout; ++o) acc[o] = k.bias ? bias_.value[o] : T(0);
      for (int ky = 0; ky < k.kernel; ++ky) {
        const int ty = oy + k.padding - ky;
        if (ty < 0 || ty % k.stride != 0 || ty / k.stride >= x.h) continue;
        for (int kx = 0; kx < k.kernel; ++kx) {
          const int tx = ox + k.padding - kx;
          if (tx < 0 || tx % k.stride != 0 || tx / k.stride >= x.w) continue;
          const T* in = &x.at(b, ty / k.stride, tx / k.stride, 0);
          const T* tap = &weights_.value[static_cast<std::size_t>(ky * k.kernel + kx) * k.cin * k.cout];
          for (int i = 0; i < k.cin; ++i)
            for (int o = 0; o < k.cout; ++o) acc[o] += in[i] * tap[static_cast<std::size_t>(i) * k.cout + o];
        }
      }
    }
  });
  return out;
}

template <typename T>
Tensor<T> ConvTranspose2d<T>::backward(const Tensor<T>& dy) {
  const auto& k = config_;
  const Tensor<T>& x = input_;
  const int ho = out_size(x.h), wo = out_size(x.w);
  if (dy.n != x.n || dy.h != ho || dy.w != wo || dy.c != k.cout) {
    throw Error(weights_.name + ": gradient " + dy.shape_text() + " does not match the forward output");
  }
  if (!phases_.empty()) return phase_backward(dy);
  Tensor<T> dx(x.n, x.h, x.w, k.cin);
  const int blocks_per_image = (x.h + kReductionRows - 1) / kReductionRows;
  const int blocks = x.n * blocks_per_image;
  const std::size_t wsize = weights_.value.size();
  std::vector<T> partial(static_cast<std::size_t>(blocks) * wsize, T(0));
  // Input rows in fixed blocks: d(input) directly, d(weights) as partial sums.
  tbb::parallel_for(0, blocks, [&](int block) {
    const int b = block / blocks_per_image;
    const int y0 = (block % blocks_per_image) * kReductionRows, y1 = std::min(x.h, y0 + kReductionRows);
    T* pw = &partial[static_cast<std::size_t>(block) * wsize];
    for (int iy = y0; iy < y1; ++iy) {
      for (int ix = 0; ix < x.w; ++ix) {
        const T* in = &x.at(b, iy, ix, 0);
        T* g = &dx.at(b, iy, ix, 0);
        for (int ky = 0; ky < k.kernel; ++ky) {
          const int oy = iy * k.stride - k.padding + ky;
          if (oy < 0 || oy >= ho) continue;
          for (int kx = 0; kx < k.kernel; ++kx) {
            const int ox = ix * k.stride - k.padding + kx;
            if (ox < 0 || ox >= wo) continue;
            const T* up = &dy.at(b, oy, ox, 0);
            const std::size_t tap = static_cast<std::size_t>(ky * k.kernel + kx) * k.cin * k.cout;
            for (int i = 0; i < k.cin; ++i) {
              const T* w = &weights_.value[tap + static_cast<std::size_t>(i) * k.cout];
              T* gw = pw + tap + static_cast<std::size_t>(i) * k.cout;
              T sum = T(0);
              for (int o = 0; o < k.cout; ++o) {
                sum += up[o] * w[o];
                gw[o] += in[i] * up[o];
              }
              g[i] += sum;
            }
          }
        }
      }
    }
  });
  for (int block = 0; block < blocks; ++block)
    for (std::size_t j = 0; j < wsize; ++j) weights_.grad[j] += partial[static_cast<std::size_t>(block) * wsize + j];
  if (k.bias) {
    for (int b = 0; b < dy.n; ++b)
      for (int y = 0; y < ho; ++y)
        for (int xx = 0; xx < wo; ++xx)
          for (int o = 0; o < k.cout; ++o) bias_.grad[o] += dy.at(b, y, xx, o);
  }
  return dx;
}

// ---------------------------------------------------- AdaptiveBatchNorm

template <typename T>
AdaptiveBatchNorm<T>::AdaptiveBatchNorm(int channels, const std::string& prefix, T w0, T w1, std::vector<T> beta,
                                        double epsilon)
    : channels_(channels),
      epsilon_(epsilon),
      w0_(prefix + "/w0", {}, {w0}),
      w1_(prefix + "/w1", {}, {w1}),
      beta_(prefix + "/BatchNorm/beta", {channels}, std::move(beta)) {
  if (beta_.value.size() != static_cast<std::size_t>(channels)) throw Error(prefix + ": beta needs " + std::to_string(channels) + " values");
}

template <typename T>
std::vector<Parameter<T>*> AdaptiveBatchNorm<T>::parameters() {
  return {&w0_, &w1_, &beta_};
}

namespace {

// Per-channel sums of f(pixel values) over every pixel, in float64: one
// partial per row, added in row order.
template <typename T, typename F>
std::vector<double> channel_sums(const Tensor<T>& x, int sums_per_channel, F&& f) {
  const int rows = x.n * x.h;
  const std::size_t stride = static_cast<std::size_t>(sums_per_channel) * x.c;
  std::vector<double> partial(static_cast<std::size_t>(rows) * stride, 0.0);
  tbb::parallel_for(0, rows, [&](int row) {
    double* p = &partial[static_cast<std::size_t>(row) * stride];
    const std::size_t base = static_cast<std::size_t>(row) * x.w * x.c;
    for (int px = 0; px < x.w; ++px) f(base + static_cast<std::size_t>(px) * x.c, p);
  });
  std::vector<double> total(stride, 0.0);
  for (int row = 0; row < rows; ++row)
    for (std::size_t j = 0; j < stride; ++j) total[j] += partial[static_cast<std::size_t>(row) * stride + j];
  return total;
}

}  // namespace

template <typename T>
Tensor<T> AdaptiveBatchNorm<T>::forward(const Tensor<T>& x) {
  require_channels(x, channels_, w0_.name.c_str());
  input_ = x;
  const int c = channels_;
  const auto sums = channel_sums(x, 2, [&](std::size_t at, double* p) {
    for (int ch = 0; ch < c; ++ch) {
      const double v = x.data[at + ch];
      p[ch] += v;
      p[c + ch] += v * v;
    }
  });
  const double count = double(x.n) * x.h * x.w;
  std::vector<T> mean(c);
  inv_std_.assign(c, 0.0);
  for (int ch = 0; ch < c; ++ch) {
    const double mu = sums[ch] / count;
    mean[ch] = T(mu);
    inv_std_[ch] = 1.0 / std::sqrt(std::max(0.0, sums[c + ch] / count - mu * mu) + epsilon_);
  }
  normalised_ = Tensor<T>(x.n, x.h, x.w, c);
  Tensor<T> out(x.n, x.h, x.w, c);
  const T w0 = w0_.value[0], w1 = w1_.value[0];
  tbb::parallel_for(std::size_t(0), x.size() / c, [&](std::size_t px) {
    for (int ch = 0; ch < c; ++ch) {
      const std::size_t at = px * c + ch;
      const T hat = (x.data[at] - mean[ch]) * T(inv_std_[ch]);
      normalised_.data[at] = hat;
      out.data[at] = w0 * x.data[at] + w1 * (hat + beta_.value[ch]);
    }
  });
  return out;
}

template <typename T>
Tensor<T> AdaptiveBatchNorm<T>::backward(const Tensor<T>& dy) {
  if (!dy.same_shape(input_)) throw Error(w0_.name + ": gradient " + dy.shape_text() + " does not match the forward output");
  const int c = channels_;
  // Per channel: Σ dz, Σ dz·y, Σ dz·x̂.
  const auto sums = channel_sums(dy, 3, [&](std::size_t at, double* p) {
    for (int ch = 0; ch < c; ++ch) {
      const double g = dy.data[at + ch];
      p[ch] += g;
      p[c + ch] += g * double(input_.data[at + ch]);
      p[2 * c + ch] += g * double(normalised_.data[at + ch]);
    }
  });
  const double count = double(dy.n) * dy.h * dy.w;
  const T w0 = w0_.value[0], w1 = w1_.value[0];
  double dw0 = 0, dw1 = 0;
  std::vector<T> mean_g(c), mean_g_hat(c);
  for (int ch = 0; ch < c; ++ch) {
    dw0 += sums[c + ch];
    dw1 += sums[2 * c + ch] + sums[ch] * double(beta_.value[ch]);
    beta_.grad[ch] += T(double(w1) * sums[ch]);
    mean_g[ch] = T(double(w1) * sums[ch] / count);            // mean of w1·dz
    mean_g_hat[ch] = T(double(w1) * sums[2 * c + ch] / count);  // mean of w1·dz·x̂
  }
  w0_.grad[0] += T(dw0);
  w1_.grad[0] += T(dw1);
  Tensor<T> dx(dy.n, dy.h, dy.w, c);
  tbb::parallel_for(std::size_t(0), dy.size() / c, [&](std::size_t px) {
    for (int ch = 0; ch < c; ++ch) {
      const std::size_t at = px * c + ch;
      const T g = w1 * dy.data[at];
      dx.data[at] = w0 * dy.data[at] + T(inv_std_[ch]) * (g - mean_g[ch] - normalised_.data[at] * mean_g_hat[ch]);
    }
  });
  return dx;
}

// ---------------------------------------------------------- InstanceNorm

template <typename T>
InstanceNorm<T>::InstanceNorm(int channels, const std::string& prefix, std::vector<T> gamma, std::vector<T> beta,
                              double epsilon)
    : channels_(channels),
      epsilon_(epsilon),
      gamma_(prefix + "/gamma", {channels}, std::move(gamma)),
      beta_(prefix + "/beta", {channels}, std::move(beta)) {
  if (gamma_.value.size() != std::size_t(channels) || beta_.value.size() != std::size_t(channels)) {
    throw Error(prefix + ": gamma and beta need " + std::to_string(channels) + " values each");
  }
}

template <typename T>
std::vector<Parameter<T>*> InstanceNorm<T>::parameters() {
  return {&gamma_, &beta_};
}

template <typename T>
Tensor<T> InstanceNorm<T>::forward(const Tensor<T>& x) {
  require_channels(x, channels_, gamma_.name.c_str());
  const int c = channels_;
  const std::size_t plane = static_cast<std::size_t>(x.h) * x.w;
  normalised_ = Tensor<T>(x.n, x.h, x.w, c);
  inv_std_.assign(static_cast<std::size_t>(x.n) * c, 0.0);
  Tensor<T> out(x.n, x.h, x.w, c);
  // One sample at a time, its sums in float64 in pixel order.
  tbb::parallel_for(0, x.n, [&](int b) {
    std::vector<double> sum(c, 0.0), squares(c, 0.0);
    const T* px = &x.data[static_cast<std::size_t>(b) * plane * c];
    for (std::size_t p = 0; p < plane; ++p)
      for (int ch = 0; ch < c; ++ch) {
        const double v = px[p * c + ch];
        sum[ch] += v;
        squares[ch] += v * v;
      }
    for (int ch = 0; ch < c; ++ch) {
      const double mean = sum[ch] / double(plane);
      const double r = 1.0 / std::sqrt(std::max(0.0, squares[ch] / double(plane) - mean * mean) + epsilon_);
      inv_std_[static_cast<std::size_t>(b) * c + ch] = r;
      for (std::size_t p = 0; p < plane; ++p) {
        const std::size_t at = (static_cast<std::size_t>(b) * plane + p) * c + ch;
        const T hat = T((double(x.data[at]) - mean) * r);
        normalised_.data[at] = hat;
        out.data[at] = gamma_.value[ch] * hat + beta_.value[ch];
      }
    }
  });
  return out;
}

template <typename T>
Tensor<T> InstanceNorm<T>::backward(const Tensor<T>& dy) {
  if (!dy.same_shape(normalised_)) throw Error(gamma_.name + ": gradient " + dy.shape_text() + " does not match the forward output");
  const int c = channels_;
  const std::size_t plane = static_cast<std::size_t>(dy.h) * dy.w;
  Tensor<T> dx(dy.n, dy.h, dy.w, c);
  // Per sample and channel: Σ dy and Σ dy·x̂ (float64, pixel order); the
  // parameters' gradients added sample by sample in order.
  std::vector<double> sums(static_cast<std::size_t>(dy.n) * 2 * c, 0.0);
  tbb::parallel_for(0, dy.n, [&](int b) {
    double* s = &sums[static_cast<std::size_t>(b) * 2 * c];
    for (std::size_t p = 0; p < plane; ++p)
      for (int ch = 0; ch < c; ++ch) {
        const std::size_t at = (static_cast<std::size_t>(b) * plane + p) * c + ch;
        s[ch] += dy.data[at];
        s[c + ch] += double(dy.data[at]) * double(normalised_.data[at]);
      }
    for (int ch = 0; ch < c; ++ch) {
      const double g = double(gamma_.value[ch]) * inv_std_[static_cast<std::size_t>(b) * c + ch];
      const double mean_dy = s[ch] / double(plane), mean_dy_hat = s[c + ch] / double(plane);
      for (std::size_t p = 0; p < plane; ++p) {
        const std::size_t at = (static_cast<std::size_t>(b) * plane + p) * c + ch;
        dx.data[at] = T(g * (double(dy.data[at]) - mean_dy - double(normalised_.data[at]) * mean_dy_hat));
      }
    }
  });
  for (int b = 0; b < dy.n; ++b)
    for (int ch = 0; ch < c; ++ch) {
      beta_.grad[ch] += T(sums[static_cast<std::size_t>(b) * 2 * c + ch]);
      gamma_.grad[ch] += T(sums[static_cast<std::size_t>(b) * 2 * c + c + ch]);
    }
  return dx;
}

// ------------------------------------------------------------- Residual

template <typename T>
Tensor<T> Residual<T>::forward(const Tensor<T>& x) {
  Tensor<T> y = inner_->forward(x);
  if (!y.same_shape(x)) throw Error("residual: the inner layers change the shape " + x.shape_text() + " to " + y.shape_text());
  for (std::size_t i = 0; i < y.size(); ++i) y.data[i] += x.data[i];
  return y;
}

template <typename T>
Tensor<T> Residual<T>::backward(const Tensor<T>& dy) {
  Tensor<T> dx = inner_->backward(dy);
  for (std::size_t i = 0; i < dx.size(); ++i) dx.data[i] += dy.data[i];
  return dx;
}

// ---------------------------------------------------------- activations

template <typename T>
Tensor<T> LeakyRelu<T>::forward(const Tensor<T>& x) {
  input_ = x;
  Tensor<T> out = x;
  for (auto& v : out.data) v = std::max(slope_ * v, v);
  return out;
}

template <typename T>
Tensor<T> LeakyRelu<T>::backward(const Tensor<T>& dy) {
  if (!dy.same_shape(input_)) throw Error("leaky ReLU: gradient " + dy.shape_text() + " does not match the forward output");
  Tensor<T> dx = dy;
  // The slope where slope·x > x, i.e. x < 0 (for slope < 1); 1 elsewhere, as PyTorch.
  for (std::size_t i = 0; i < dx.size(); ++i) dx.data[i] *= input_.data[i] > T(0) ? T(1) : slope_;
  return dx;
}

// ----------------------------------------------------------- Sequential

template <typename T>
Tensor<T> Sequential<T>::forward(const Tensor<T>& x) {
  Tensor<T> y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

template <typename T>
Tensor<T> Sequential<T>::backward(const Tensor<T>& dy) {
  Tensor<T> g = dy;
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) g = (*it)->backward(g);
  return g;
}

template <typename T>
std::vector<Parameter<T>*> Sequential<T>::parameters() {
  std::vector<Parameter<T>*> all;
  for (auto& l : layers_)
    for (auto* p : l->parameters()) all.push_back(p);
  return all;
}

// ---------------------------------------------------------------- losses

namespace {

// mean(f(p − t)) over every value and its gradient f'(p − t)/N: `f` gives
// (value, derivative) for one difference.
template <typename T, typename F>
Loss<T> elementwise_loss(const char* who, const Tensor<T>& prediction, const Tensor<T>& target, F&& f) {
  if (!prediction.same_shape(target)) {
    throw Error(std::string(who) + ": prediction " + prediction.shape_text() + " and target " + target.shape_text() +
                " differ");
  }
  Loss<T> loss{0, Tensor<T>(prediction.n, prediction.h, prediction.w, prediction.c)};
  const double n = double(prediction.size());
  double sum = 0;
  for (std::size_t i = 0; i < prediction.size(); ++i) {
    const auto [value, derivative] = f(double(prediction.data[i]) - double(target.data[i]));
    sum += value;
    loss.grad.data[i] = T(derivative / n);
  }
  loss.value = sum / n;
  return loss;
}

}  // namespace

template <typename T>
Loss<T> mse_loss(const Tensor<T>& prediction, const Tensor<T>& target) {
  return elementwise_loss("MSE loss", prediction, target, [](double e) { return std::pair(e * e, 2.0 * e); });
}

template <typename T>
Loss<T> l1_loss(const Tensor<T>& prediction, const Tensor<T>& target) {
  return elementwise_loss("L1 loss", prediction, target,
                          [](double e) { return std::pair(std::abs(e), e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0); });
}

// ------------------------------------------------------------ Generated

namespace {

template <typename T>
Tensor<T> sample_of(const Tensor<T>& x, int b) {
  Tensor<T> s(1, x.h, x.w, x.c);
  const std::size_t n = static_cast<std::size_t>(x.h) * x.w * x.c;
  std::copy_n(x.data.begin() + static_cast<std::ptrdiff_t>(b * n), n, s.data.begin());
  return s;
}

}  // namespace

template <typename T>
Generated<T>::Generated(Factory make, const std::vector<std::vector<T>>& base, const std::vector<std::vector<T>>& from_params,
                        int weight_inputs, std::shared_ptr<const std::vector<std::vector<T>>> inputs)
    : make_(std::move(make)), weight_inputs_(weight_inputs), inputs_(std::move(inputs)) {
  if (weight_inputs_ < 1) throw Error("a generated layer needs at least one weight input");
  const auto prototype = make_(base);
  const auto params = prototype->parameters();
  if (params.size() != base.size() || (!from_params.empty() && from_params.size() != base.size())) {
    throw Error("generated layer: one base and one from_params block per inner parameter");
  }
  for (std::size_t j = 0; j < params.size(); ++j) {
    base_.emplace_back(params[j]->name, params[j]->shape, params[j]->value);
    std::vector<std::int64_t> shape = params[j]->shape;
    shape.insert(shape.begin(), weight_inputs_);
    const std::size_t size = static_cast<std::size_t>(weight_inputs_) * params[j]->value.size();
    std::vector<T> a = from_params.empty() ? std::vector<T>(size, T(0)) : from_params[j];
    if (a.size() != size) throw Error(params[j]->name + "_from_params: " + std::to_string(a.size()) + " values, needs " + std::to_string(size));
    from_params_.emplace_back(params[j]->name + "_from_params", shape, std::move(a));
  }
}

template <typename T>
std::vector<Parameter<T>*> Generated<T>::parameters() {
  std::vector<Parameter<T>*> out;
  for (std::size_t j = 0; j < base_.size(); ++j) out.push_back(&base_[j]), out.push_back(&from_params_[j]);
  return out;
}

template <typename T>
Tensor<T> Generated<T>::forward(const Tensor<T>& x) {
  if (!inputs_ || inputs_->size() != static_cast<std::size_t>(x.n)) {
    throw Error(base_[0].name + ": weight inputs for " + std::to_string(inputs_ ? inputs_->size() : 0) +
                " samples, the batch has " + std::to_string(x.n));
  }
  samples_.clear();
  used_inputs_ = *inputs_;
  Tensor<T> out;
  for (int b = 0; b < x.n; ++b) {
    const std::vector<T>& p = used_inputs_[b];
    if (p.size() != static_cast<std::size_t>(weight_inputs_)) throw Error(base_[0].name + ": wrong number of weight inputs");
    std::vector<std::vector<T>> values;
    for (std::size_t j = 0; j < base_.size(); ++j) {
      std::vector<T> v = base_[j].value;
      const std::size_t n = v.size();
      for (int k = 0; k < weight_inputs_; ++k)
        for (std::size_t i = 0; i < n; ++i) v[i] += from_params_[j].value[k * n + i] * p[k];
      values.push_back(std::move(v));
    }
    samples_.push_back(make_(values));
    const Tensor<T> y = samples_.back()->forward(sample_of(x, b));
    if (b == 0) out = Tensor<T>(x.n, y.h, y.w, y.c);
    std::copy(y.data.begin(), y.data.end(), out.data.begin() + static_cast<std::ptrdiff_t>(b * y.size()));
  }
  return out;
}

template <typename T>
Tensor<T> Generated<T>::backward(const Tensor<T>& dy) {
  if (samples_.size() != static_cast<std::size_t>(dy.n)) throw Error(base_[0].name + ": backward without its forward");
  Tensor<T> dx;
  for (int b = 0; b < dy.n; ++b) {
    const Tensor<T> d = samples_[b]->backward(sample_of(dy, b));
    if (b == 0) dx = Tensor<T>(dy.n, d.h, d.w, d.c);
    std::copy(d.data.begin(), d.data.end(), dx.data.begin() + static_cast<std::ptrdiff_t>(b * d.size()));
    const auto inner = samples_[b]->parameters();
    const std::vector<T>& p = used_inputs_[b];
    for (std::size_t j = 0; j < base_.size(); ++j) {
      const std::vector<T>& g = inner[j]->grad;
      const std::size_t n = g.size();
      for (std::size_t i = 0; i < n; ++i) base_[j].grad[i] += g[i];
      for (int k = 0; k < weight_inputs_; ++k)
        for (std::size_t i = 0; i < n; ++i) from_params_[j].grad[k * n + i] += g[i] * p[k];
    }
  }
  samples_.clear();
  return dx;
}

template <typename T>
Tensor<T> CropTo<T>::forward(const Tensor<T>& x) {
  const auto [h, w] = *slot_;
  if (h > x.h || w > x.w) throw Error("crop to " + std::to_string(h) + "x" + std::to_string(w) + " of a smaller " + x.shape_text());
  in_h_ = x.h, in_w_ = x.w;
  Tensor<T> out(x.n, h, w, x.c);
  for (int b = 0; b < x.n; ++b)
    for (int y = 0; y < h; ++y) std::copy_n(&x.at(b, y, 0, 0), static_cast<std::size_t>(w) * x.c, &out.at(b, y, 0, 0));
  return out;
}

template <typename T>
Tensor<T> CropTo<T>::backward(const Tensor<T>& dy) {
  Tensor<T> dx(dy.n, in_h_, in_w_, dy.c);
  for (int b = 0; b < dy.n; ++b)
    for (int y = 0; y < dy.h; ++y) std::copy_n(&dy.at(b, y, 0, 0), static_cast<std::size_t>(dy.w) * dy.c, &dx.at(b, y, 0, 0));
  return dx;
}

template class Generated<float>;
template class Generated<double>;
template class CropTo<float>;
template class CropTo<double>;
template class Conv2d<float>;
template class Conv2d<double>;
template class AdaptiveBatchNorm<float>;
template class AdaptiveBatchNorm<double>;
template class ConvTranspose2d<float>;
template class ConvTranspose2d<double>;
template class InstanceNorm<float>;
template class InstanceNorm<double>;
template class Residual<float>;
template class Residual<double>;
template class LeakyRelu<float>;
template class LeakyRelu<double>;
template class Sequential<float>;
template class Sequential<double>;
template Loss<float> mse_loss(const Tensor<float>&, const Tensor<float>&);
template Loss<double> mse_loss(const Tensor<double>&, const Tensor<double>&);
template Loss<float> l1_loss(const Tensor<float>&, const Tensor<float>&);
template Loss<double> l1_loss(const Tensor<double>&, const Tensor<double>&);

}  // namespace opforge::learner
