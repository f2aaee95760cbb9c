#include "opforge/model/cpu_executor.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>

#include "conv_kernels.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"
#include "opforge/model/convolution.hpp"

namespace opforge::model {
namespace {

using detail::kLanes;
using detail::Tap;

// A layer's weights repacked for the kernels: [tap][ci][cout rounded up to
// whole vectors], zero in the padding lanes.
struct PackedLayer {
  const LayerSpec* spec = nullptr;
  int padded_cout = 0;
  std::vector<float> kernel;
  std::vector<float> bias;  // [cout], zeros when the layer has none
};

PackedLayer pack(const LayerSpec& l, std::span<const float> kernel, std::span<const float> bias) {
  PackedLayer p;
  p.spec = &l;
  p.padded_cout = (l.cout + kLanes - 1) / kLanes * kLanes;
  const int taps = l.kernel_h * l.kernel_w;
  p.kernel.assign(static_cast<std::size_t>(taps) * l.cin * p.padded_cout, 0.0f);
  for (int t = 0; t < taps; ++t) {
    for (int i = 0; i < l.cin; ++i) {
      const float* src = &kernel[(static_cast<std::size_t>(t) * l.cin + i) * l.cout];
      std::copy(src, src + l.cout, &p.kernel[(static_cast<std::size_t>(t) * l.cin + i) * p.padded_cout]);
    }
  }
  p.bias.assign(l.cout, 0.0f);
  if (!bias.empty()) std::copy(bias.begin(), bias.end(), p.bias.begin());
  return p;
}

PackedLayer pack(const LayerSpec& l, const LayerWeights& w) { return pack(l, w.kernel, l.bias ? std::span<const float>(w.bias) : std::span<const float>()); }

// values[c] = act(scale[c]·values[c] + shift[c]) over `pixels` pixels of
// `channels` values; the activation is chosen outside the loops so that each
// loop vectorises.
void scale_shift_activate(float* values, int pixels, int channels, const float* scale, const float* shift,
                          const LayerSpec& l) {
  const float slope = l.negative_slope;
  for (int x = 0; x < pixels; ++x, values += channels) {
    switch (l.activation) {
      case Activation::leaky_relu:
        for (int c = 0; c < channels; ++c) {
          const float z = scale[c] * values[c] + shift[c];
          values[c] = std::max(slope * z, z);
        }
        break;
      case Activation::relu:
        for (int c = 0; c < channels; ++c) values[c] = std::max(0.0f, scale[c] * values[c] + shift[c]);
        break;
      case Activation::none:
        for (int c = 0; c < channels; ++c) values[c] = scale[c] * values[c] + shift[c];
        break;
    }
  }
}

// One output row of a stride-1 "SAME" convolution: `out` gets W×cout values
// (bias added; the activation too unless a normaliser follows).
class RowConvolution {
 public:
  RowConvolution(const PackedLayer& layer, const float* input, int rows, int cols, bool vectorised)
      : layer_(layer),
        l_(*layer.spec),
        input_(input),
        rows_(rows),
        cols_(cols),
        vectorised_(vectorised),
        ones_(layer.padded_cout, 1.0f),
        zeros_(layer.padded_cout, 0.0f) {}

  void operator()(int y, float* out) const {
    const int centre_y = l_.kernel_h / 2;
    // Vertical taps outside the image read zeros: drop them for the row.
    int valid_ky[detail::kMaxKernel], valid_rows = 0;
    for (int ky = 0; ky < l_.kernel_h; ++ky) {
      const int iy = y + (ky - centre_y) * l_.dilation;
      if (iy >= 0 && iy < rows_) valid_ky[valid_rows++] = ky;
    }
    // Column tiles keep a tile's accumulators and output in L2 (a 4K row
    // of 32 channels is 480 KiB): 240 pixels, a whole number of blocks.
    constexpr int kTile = 240;
    alignas(64) float sums[kTile * detail::kMaxVectors * kLanes];
    Tap taps[detail::kMaxKernel * detail::kMaxKernel];
    for (int t0 = 0; t0 < cols_; t0 += kTile) {
      const int t1 = std::min(cols_, t0 + kTile);
      for (int c0 = 0; c0 < layer_.padded_cout; c0 += detail::kMaxVectors * kLanes) {
        const int vectors = std::min(detail::kMaxVectors, (layer_.padded_cout - c0) / kLanes);
        const int block = detail::block_pixels(vectors);
        const int width = vectors * kLanes;
        int x = t0;
        while (x + block <= t1) {
          const int pattern = horizontal_pattern(x, block);
          if (pattern < 0) {  // a tap enters the image inside this block: pixel by pixel
            for (const int end = x + block; x < end; ++x) single_pixel(y, x, valid_ky, valid_rows, c0, vectors, taps, &sums[(x - t0) * width]);
            continue;
          }
          int blocks = 1;  // the run of blocks that read the same taps
          while (x + (blocks + 1) * block <= t1 && horizontal_pattern(x + blocks * block, block) == pattern) ++blocks;
          const int n = block_taps(y, x, block, valid_ky, valid_rows, c0, taps);
          detail::run_kernel(vectorised_, vectors, block, blocks, taps, n, l_.cin, layer_.padded_cout, &sums[(x - t0) * width]);
          x += blocks * block;
        }
        for (; x < t1; ++x) single_pixel(y, x, valid_ky, valid_rows, c0, vectors, taps, &sums[(x - t0) * width]);
        // Bias, and the chunk's channels into the row.
        const int channels = std::min(width, l_.cout - c0);
        const float* bias = layer_.bias.data() + c0;
        for (int px = t0; px < t1; ++px) {
          float* dst = out + static_cast<std::size_t>(px) * l_.cout + c0;
          const float* src = &sums[(px - t0) * width];
          for (int c = 0; c < channels; ++c) dst[c] = src[c] + bias[c];
        }
      }
    }
    if (l_.normalizer == Normalizer::none && l_.activation != Activation::none) {
      scale_shift_activate(out, cols_, l_.cout, ones_.data(), zeros_.data(), l_);
    }
  }

 private:
  // Which horizontal taps lie inside the image for all of pixels
  // x0..x0+count-1 (a bit per tap), or -1 when one does for part of them.
  int horizontal_pattern(int x0, int count) const {
    int pattern = 0;
    for (int kx = 0; kx < l_.kernel_w; ++kx) {
      const int offset = (kx - l_.kernel_w / 2) * l_.dilation;
      const int lo = std::max(0, -offset), hi = std::min(cols_, cols_ - offset);
      const int first = x0, last = x0 + count - 1;
      if (last < lo || first >= hi) continue;
      if (first < lo || last >= hi) return -1;
      pattern |= 1 << kx;
    }
    return pattern;
  }

  // Taps for pixels x0..x0+count-1; -1 when some horizontal tap is inside
  // the image for part of them only (the caller goes pixel by pixel).
  int block_taps(int y, int x0, int count, const int* valid_ky, int valid_rows, int c0, Tap* taps) const {
    const int centre_y = l_.kernel_h / 2, centre_x = l_.kernel_w / 2;
    int n = 0;
    for (int kx = 0; kx < l_.kernel_w; ++kx) {
      const int offset = (kx - centre_x) * l_.dilation;
      const int lo = std::max(0, -offset), hi = std::min(cols_, cols_ - offset);
      const int first = x0, last = x0 + count - 1;
      if (last < lo || first >= hi) continue;   // all outside: zeros
      if (first < lo || last >= hi) return -1;  // mixed
      for (int r = 0; r < valid_rows; ++r) {
        const int ky = valid_ky[r];
        const int iy = y + (ky - centre_y) * l_.dilation;
        taps[n].input = input_ + (static_cast<std::size_t>(iy) * cols_ + (x0 + offset)) * l_.cin;
        taps[n].weights = layer_.kernel.data() +
                          static_cast<std::size_t>(ky * l_.kernel_w + kx) * l_.cin * layer_.padded_cout + c0;
        ++n;
      }
    }
    return n;
  }

  void single_pixel(int y, int x, const int* valid_ky, int valid_rows, int c0, int vectors, Tap* taps,
                    float* sums) const {
    const int n = block_taps(y, x, 1, valid_ky, valid_rows, c0, taps);
    detail::run_kernel(vectorised_, vectors, 1, 1, taps, n, l_.cin, layer_.padded_cout, sums);
  }

  const PackedLayer& layer_;
  const LayerSpec& l_;
  const float* input_;
  int rows_, cols_;
  bool vectorised_;
  std::vector<float> ones_, zeros_;  // the identity scale and shift
};

// Per-row float64 sums of y and y² for each channel.
void add_row_statistics(const float* row, int cols, int channels, double* sums) {
  double* sum = sums;
  double* squares = sums + channels;
  std::fill(sums, sums + 2 * channels, 0.0);
  for (int x = 0; x < cols; ++x, row += channels) {
    for (int c = 0; c < channels; ++c) {
      const double v = row[c];
      sum[c] += v;
      squares[c] += v * v;
    }
  }
}

// Rows per band of an in-place layer: enough for every thread, few enough
// that the rows held back stay small.
int band_rows() { return std::clamp(4 * tbb::this_task_arena::max_concurrency(), 8, 64); }

class Forward {
 public:
  Forward(const Model& model, int rows, int cols, bool vectorised)
      : model_(model), rows_(rows), cols_(cols), vectorised_(vectorised) {}

  cv::Mat run(const cv::Mat& input) {
    const auto& layers = model_.spec().layers;
    const float* current = input.ptr<float>();
    float* current_buffer = nullptr;  // the buffer `current` lives in, if ours
    cv::Mat output;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const LayerSpec& l = layers[i];
      const PackedLayer packed = pack(l, model_.weights()[i]);
      float* destination;
      bool in_place = false;
      if (i + 1 == layers.size()) {
        output.create(rows_, cols_, CV_32FC(l.cout));
        destination = output.ptr<float>();
      } else if (current_buffer != nullptr && l.cin == l.cout) {
        destination = current_buffer;
        in_place = true;
      } else {
        destination = buffer_for(current_buffer, l.cout);
      }
      std::vector<double> row_sums;
      if (l.normalizer == Normalizer::adaptive_bn) row_sums.resize(static_cast<std::size_t>(rows_) * 2 * l.cout);
      const RowConvolution conv(packed, current, rows_, cols_, vectorised_);
      const std::size_t row_values = static_cast<std::size_t>(cols_) * l.cout;
      const auto compute_row = [&](int y, float* out) {
        conv(y, out);
        if (!row_sums.empty()) add_row_statistics(out, cols_, l.cout, &row_sums[static_cast<std::size_t>(y) * 2 * l.cout]);
      };
      if (in_place) {
        convolve_in_place(l, compute_row, destination, row_values);
      } else {
        tbb::parallel_for(tbb::blocked_range<int>(0, rows_, 1), [&](const tbb::blocked_range<int>& r) {
          for (int y = r.begin(); y != r.end(); ++y) compute_row(y, destination + y * row_values);
        });
      }
      if (l.normalizer == Normalizer::adaptive_bn) normalise(l, model_.weights()[i], row_sums, destination);
      current = destination;
      if (i + 1 < layers.size()) current_buffer = destination;
    }
    return output;
  }

 private:
  // One of two activation buffers, the one `current` is not in.
  float* buffer_for(const float* current, int channels) {
    const std::size_t need = static_cast<std::size_t>(rows_) * cols_ * channels;
    for (auto& [buffer, size] : buffers_) {
      if (buffer.get() != current && size >= need) return buffer.get();
    }
    for (auto& [buffer, size] : buffers_) {
      if (buffer.get() != current) {
        buffer.reset();
        buffer = std::make_unique_for_overwrite<float[]>(need);
        size = need;
        return buffer.get();
      }
    }
    buffers_.emplace_back(std::make_unique_for_overwrite<float[]>(need), need);
    return buffers_.back().first.get();
  }

  // Bands of rows are computed in parallel into held-back buffers; a band
  // is copied over its input rows once no later output row reads them.
  template <typename ComputeRow>
  void convolve_in_place(const LayerSpec& l, const ComputeRow& compute_row, float* data, std::size_t row_values) {
    const int band = band_rows();
    struct Held {
      int begin, end;
      std::unique_ptr<float[]> values;
    };
    std::deque<Held> held;
    std::vector<std::unique_ptr<float[]>> spare;
    const auto release = [&](const Held& h) {
      std::memcpy(data + h.begin * row_values, h.values.get(), (h.end - h.begin) * row_values * sizeof(float));
    };
    for (int y0 = 0; y0 < rows_; y0 += band) {
      const int y1 = std::min(rows_, y0 + band);
      std::unique_ptr<float[]> values;
      if (!spare.empty()) {
        values = std::move(spare.back());
        spare.pop_back();
      } else {
        values = std::make_unique_for_overwrite<float[]>(band * row_values);
      }
      float* base = values.get();
      tbb::parallel_for(tbb::blocked_range<int>(y0, y1, 1), [&](const tbb::blocked_range<int>& r) {
        for (int y = r.begin(); y != r.end(); ++y) compute_row(y, base + (y - y0) * row_values);
      });
      held.push_back({y0, y1, std::move(values)});
      // Output rows from y1 on read input rows from y1 - reach on.
      while (!held.empty() && held.front().end <= y1 - l.reach_y()) {
        release(held.front());
        spare.push_back(std::move(held.front().values));
        held.pop_front();
      }
    }
    for (const auto& h : held) release(h);
  }

  // z = w0·y + w1·((y − μ)·r + β), r = 1/√(σ² + ε), folded into one scale
  // and shift per channel; then the activation.
  void normalise(const LayerSpec& l, const LayerWeights& w, const std::vector<double>& row_sums, float* data) const {
    const int channels = l.cout;
    std::vector<double> sum(channels, 0.0), squares(channels, 0.0);
    for (int y = 0; y < rows_; ++y) {  // fixed order: the same sums for any thread count
      const double* s = &row_sums[static_cast<std::size_t>(y) * 2 * channels];
      for (int c = 0; c < channels; ++c) {
        sum[c] += s[c];
        squares[c] += s[channels + c];
      }
    }
    std::vector<float> scale(channels), shift(channels);
    fold_normaliser(model_.spec(), l, w, sum.data(), squares.data(), static_cast<double>(rows_) * cols_, scale.data(),
                    shift.data());
    const std::size_t row_values = static_cast<std::size_t>(cols_) * channels;
    tbb::parallel_for(tbb::blocked_range<int>(0, rows_, 4), [&](const tbb::blocked_range<int>& r) {
      for (int y = r.begin(); y != r.end(); ++y) {
        scale_shift_activate(data + y * row_values, cols_, channels, scale.data(), shift.data(), l);
      }
    });
  }

  const Model& model_;
  int rows_, cols_;
  bool vectorised_;
  std::vector<std::pair<std::unique_ptr<float[]>, std::size_t>> buffers_;
};

}  // namespace

void convolve(const LayerSpec& layer, std::span<const float> kernel, std::span<const float> bias, const float* input,
              int rows, int cols, float* output) {
  if (layer.stride != 1 || layer.transposed) throw Error("layer '" + layer.name + "': model::convolve runs stride 1 only");
  detail::convolve_rows(layer, kernel, bias, input, rows, cols, output, CpuExecutor::has_avx2());
}

void detail::convolve_rows(const LayerSpec& layer, std::span<const float> kernel, std::span<const float> bias,
                           const float* input, int rows, int cols, float* output, bool vectorised, int row_step) {
  const std::size_t need = static_cast<std::size_t>(layer.kernel_h) * layer.kernel_w * layer.cin * layer.cout;
  if (kernel.size() != need || (!bias.empty() && bias.size() != static_cast<std::size_t>(layer.cout))) {
    throw Error("layer '" + layer.name + "': kernel or bias has the wrong size");
  }
  LayerSpec plain = layer;  // the convolution and bias only
  plain.normalizer = Normalizer::none;
  plain.activation = Activation::none;
  const PackedLayer packed = pack(plain, kernel, bias);
  const RowConvolution conv(packed, input, rows, cols, vectorised);
  const std::size_t row_values = static_cast<std::size_t>(cols) * layer.cout;
  const int out_rows = (rows + row_step - 1) / row_step;
  tbb::parallel_for(tbb::blocked_range<int>(0, out_rows, 1), [&](const tbb::blocked_range<int>& r) {
    for (int y = r.begin(); y != r.end(); ++y) conv(y * row_step, output + y * row_values);
  });
}

CpuExecutor::CpuExecutor(Kernels kernels) : vectorised_(kernels == Kernels::automatic && has_avx2()) {}

bool CpuExecutor::has_avx2() { return detail::cpu_has_avx2_fma(); }

std::string CpuExecutor::name() const { return vectorised_ ? "cpu (avx2+fma)" : "cpu (portable)"; }

double CpuExecutor::peak_bytes(const NetworkSpec& spec, int rows, int cols) const {
  if (!detail::streams(spec)) return detail::layered_peak_bytes(spec, rows, cols);
  const double pixels = double(rows) * cols;
  // Two activation buffers at most (one when widths agree), the rows an
  // in-place layer holds back, the output and the per-row sums.
  int widest = 0, second = 0, reach = 0;
  bool two_buffers = false;
  for (std::size_t i = 0; i + 1 < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    if (l.cout > widest) {
      second = widest;
      widest = l.cout;
    } else {
      second = std::max(second, l.cout);
    }
    if (i > 0 && l.cin != l.cout) two_buffers = true;
    reach = std::max(reach, l.reach_y());
  }
  const double activations = pixels * (widest + (two_buffers ? second : 0)) * sizeof(float);
  const double held = (reach + 2.0 * 64) * cols * widest * sizeof(float);
  const double output = pixels * spec.output_channels() * sizeof(float);
  const double sums = double(rows) * 2 * widest * sizeof(double);
  return activations + held + output + sums;
}

cv::Mat CpuExecutor::forward(const Model& model, const cv::Mat& input) {
  const NetworkSpec& spec = model.spec();
  if (input.empty() || input.dims != 2 || input.depth() != CV_32F || input.channels() != spec.input_channels()) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.input_channels()) +
                "-channel float32 input, got " + std::to_string(input.channels()) + " channel(s)");
  }
  require_memory("model '" + model.source() + "'", "a " + std::to_string(input.cols) + "x" + std::to_string(input.rows) + " forward pass",
                 peak_bytes(spec, input.rows, input.cols));
  if (spec.weight_inputs() > 0) {
    throw Error("model '" + model.source() + "' has generated weights: run Model::specialised(planes) (Executor::run does)");
  }
  const cv::Mat contiguous = input.isContinuous() ? input : input.clone();
  if (!detail::streams(spec)) return detail::layered_forward(model, contiguous, vectorised_);
  return Forward(model, input.rows, input.cols, vectorised_).run(contiguous);
}

}  // namespace opforge::model
