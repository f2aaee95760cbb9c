#include "opforge/vk_runtime/vulkan_executor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>

#include "context.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/image.hpp"
#include "opforge/model/convolution.hpp"

namespace opforge::vk {
namespace {

using detail::Buffer;
using detail::Context;
using detail::DeviceMemoryExhausted;
using detail::Pipeline;
using detail::Window;
using model::LayerSpec;
using model::NetworkSpec;
using model::Normalizer;

constexpr int kMaxBandRows = 4096;       // rows per dispatch; also the stats pass's workgroup rows

struct Shape {
  int rows = 0, cols = 0, channels = 0;
  double elements() const { return double(rows) * cols * channels; }
  std::size_t row_values() const { return static_cast<std::size_t>(cols) * channels; }
};

// Writes an image's values as the device stores them (float32, or float16
// with fp16 storage) straight into `to`, continuous: one pass over a frame
// into the staging memory, no intermediate copy.
void store(const cv::Mat& values, void* to, int element_bytes) {
  cv::Mat view(values.rows, values.cols, CV_MAKETYPE(element_bytes == 2 ? CV_16F : CV_32F, values.channels()), to);
  values.convertTo(view, view.depth());
}

// The network's tensors: 0 is the input, i + 1 the output of layer i; and
// for each tensor the last layer that reads it (as input or residual).
struct Plan {
  std::vector<Shape> shapes;
  std::vector<int> last_use;
  std::vector<int> residual;  // per layer: the tensor its residual adds, or -1
};

Plan plan_tensors(const NetworkSpec& spec, int rows, int cols) {
  Plan plan;
  plan.shapes.push_back({rows, cols, spec.input_channels()});
  std::vector<std::pair<int, int>> undone;  // inputs of the stride-2 layers not yet undone
  std::map<std::string, int> input_of;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    input_of[l.name] = static_cast<int>(i);
    Shape s = plan.shapes.back();
    if (l.transposed) {
      std::tie(s.rows, s.cols) = undone.back();
      undone.pop_back();
    } else if (l.stride == 2) {
      undone.push_back({s.rows, s.cols});
      s.rows = (s.rows + 1) / 2;
      s.cols = (s.cols + 1) / 2;
    }
    s.channels = l.cout;
    plan.shapes.push_back(s);
  }
  const int layers = static_cast<int>(spec.layers.size());
  plan.last_use.assign(plan.shapes.size(), 0);
  plan.residual.assign(layers, -1);
  for (int i = 0; i < layers; ++i) {
    plan.last_use[i] = std::max(plan.last_use[i], i);
    if (!spec.layers[i].residual_from.empty()) {
      plan.residual[i] = input_of.at(spec.layers[i].residual_from);
      plan.last_use[plan.residual[i]] = std::max(plan.last_use[plan.residual[i]], i);
    }
  }
  plan.last_use[layers] = layers;  // the output
  return plan;
}

// The input rows output rows [a, b) of layer l read, clipped to the input.
std::pair<int, int> input_rows(const LayerSpec& l, int a, int b, int in_rows) {
  int lo, hi;
  if (l.transposed) {  // output o reads inputs (o + 1 − k) / 2, k = 0..3
    lo = (a - 2) >= 0 ? (a - 2) / 2 : -1;
    hi = b / 2 + 1;
  } else {
    lo = a * l.stride - l.reach_y();
    hi = (b - 1) * l.stride + l.reach_y() + 1;
  }
  return {std::clamp(lo, 0, in_rows), std::clamp(hi, 0, in_rows)};
}

// The most input rows a band of `band` output rows reads (a band inside
// the image, where no side is clipped).
int input_window_rows(const LayerSpec& l, int band, int in_rows) {
  const int unclipped = l.transposed ? band / 2 + 3 : (band - 1) * l.stride + 2 * l.reach_y() + 1;
  return std::clamp(unclipped, 1, in_rows);
}

// Output channels per conv invocation, in vec4 groups (conv.comp's GROUPS).
int conv_groups(const LayerSpec& l) { return std::min(detail::kMaxConvGroups, (l.cout + 3) / 4); }
// vec4 groups per (tap, input channel) in the packed weights: whole invocations.
int weight_groups(const LayerSpec& l) {
  const int per = conv_groups(l);
  return ((l.cout + 3) / 4 + per - 1) / per * per;
}

// The weights of one layer as conv.comp reads them: [tap][cin][4 ×
// weight_groups], zero beyond cout; the bias likewise.
void pack_layer(const LayerSpec& l, const model::LayerWeights& w, std::vector<float>& kernel, std::vector<float>& bias) {
  const int padded = weight_groups(l) * 4;
  const int taps = l.kernel_h * l.kernel_w;
  kernel.assign(static_cast<std::size_t>(taps) * l.cin * padded, 0.0f);
  for (int t = 0; t < taps; ++t)
    for (int i = 0; i < l.cin; ++i)
      for (int o = 0; o < l.cout; ++o) {
        kernel[(static_cast<std::size_t>(t) * l.cin + i) * padded + o] = w.kernel[(static_cast<std::size_t>(t) * l.cin + i) * l.cout + o];
      }
  bias.assign(static_cast<std::size_t>(padded), 0.0f);
  if (l.bias) std::copy(w.bias.begin(), w.bias.end(), bias.begin());
}

struct ConvPush {
  int in_rows, in_cols, cin, in_offset;
  int out_cols, cout, out_row0, out_offset, band_rows;
  int kernel_h, kernel_w, dilation, stride, transposed;
  int weight_groups;
};
static_assert(sizeof(ConvPush) == 15 * sizeof(int));

struct StatsPush {
  int cols, channels, offset, first_row;
};

struct FinishPush {
  int count, channels, offset, first, residual_offset, activation;
  float slope;
};

int activation_code(const LayerSpec& l) {
  switch (l.activation) {
    case model::Activation::leaky_relu: return 1;
    case model::Activation::relu: return 2;
    case model::Activation::none: return 0;
  }
  return 0;
}

bool has_epilogue(const LayerSpec& l) {
  return l.normalizer != Normalizer::none || !l.residual_from.empty() || l.activation != model::Activation::none;
}

// The largest band in 1..limit for which `fits` holds (fits is monotone).
template <typename Fits>
int largest_band(int limit, const Fits& fits) {
  if (!fits(1)) return 0;
  int lo = 1, hi = limit;
  while (lo < hi) {
    const int mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid; else hi = mid - 1;
  }
  return lo;
}

}  // namespace

struct VulkanExecutor::Impl {
  explicit Impl(const VulkanOptions& o) : options(o), context(o) {}

  VulkanOptions options;
  Context context;
  RunReport report;

  int es() const { return context.element_bytes(); }
  std::size_t row_bytes(const Shape& s) const { return s.row_values() * static_cast<std::size_t>(es()); }
  double max_window() const { return double(context.limits().maxStorageBufferRange); }
  // Window offsets: the device's alignment, and at least 16 bytes, so that a
  // window of a tensor whose channels come in fours starts at a whole vec4.
  VkDeviceSize alignment() const { return std::max<VkDeviceSize>(context.limits().minStorageBufferOffsetAlignment, 16); }

  // --- the pass ------------------------------------------------------------

  struct Tensor {
    Shape shape;
    Buffer device;              // resident passes
    std::vector<std::uint8_t> host;  // passes in parts: the stored values' bytes
  };

  const model::Model* model = nullptr;
  Plan plan;
  Buffer stats, affine;
  VkDeviceSize affine_stride = 0;  // bytes per layer's slice of `affine`

  // --- weights, kept while the next pass runs the same ones ----------------

  // Every layer's packed kernel and bias in one device buffer, each at an
  // aligned offset; `packed` is what the buffer holds, so the next pass of
  // the same model (a video's frames, a directory) uploads nothing.
  struct LayerRanges {
    VkDeviceSize kernel = 0, kernel_bytes = 0, bias = 0, bias_bytes = 0;
  };
  std::vector<float> packed;
  std::vector<LayerRanges> ranges;
  Buffer weights;

  void upload_weights() {
    const auto& layers = model->spec().layers;
    const std::size_t align = alignment() / sizeof(float);
    std::vector<float> next, kernel, bias;
    std::vector<LayerRanges> next_ranges;
    const auto append = [&](const std::vector<float>& values, VkDeviceSize& offset, VkDeviceSize& bytes) {
      next.resize((next.size() + align - 1) / align * align, 0.0f);
      offset = next.size() * sizeof(float);
      bytes = values.size() * sizeof(float);
      next.insert(next.end(), values.begin(), values.end());
    };
    for (std::size_t i = 0; i < layers.size(); ++i) {
      pack_layer(layers[i], model->weights()[i], kernel, bias);
      LayerRanges r;
      append(kernel, r.kernel, r.kernel_bytes);
      append(bias, r.bias, r.bias_bytes);
      next_ranges.push_back(r);
    }
    if (weights.handle() != VK_NULL_HANDLE && next == packed) return;
    report.weights_uploaded = true;
    packed.clear();
    weights = Buffer();
    Buffer device(context, next.size() * sizeof(float), false);
    Buffer stage(context, next.size() * sizeof(float), true);
    std::memcpy(stage.mapped(), next.data(), next.size() * sizeof(float));
    context.submit([&](VkCommandBuffer c) { context.copy(c, stage, 0, device, 0, stage.size()); });
    weights = std::move(device);
    packed = std::move(next);
    ranges = std::move(next_ranges);
  }

  Window layer_kernel(std::size_t i) const { return {weights.handle(), ranges[i].kernel, ranges[i].kernel_bytes, 0}; }
  Window layer_bias(std::size_t i) const { return {weights.handle(), ranges[i].bias, ranges[i].bias_bytes, 0}; }
  Window layer_affine(std::size_t i) const { return {affine.handle(), i * affine_stride, affine_stride, 0}; }

  // --- buffers kept between passes -------------------------------------------

  // A GPU driver's allocation of the hundreds of MiB a 1080p activation
  // takes is not free, so a pass's buffers are kept for the next pass and
  // handed out again by exact size. Device memory held, pooled buffers
  // included, stays within the budget: pooled buffers of other sizes give
  // way, largest first, and all of them when the driver refuses memory.
  std::vector<Buffer> pool;

  Buffer take(VkDeviceSize bytes, bool host_visible) {
    for (auto it = pool.begin(); it != pool.end(); ++it) {
      if (it->size() == bytes && it->host_visible() == host_visible) {
        Buffer b = std::move(*it);
        pool.erase(it);
        return b;
      }
    }
    // No match: the pooled buffers of this kind have another pass's sizes.
    const auto of_kind = [host_visible](const Buffer& b) { return b.host_visible() == host_visible; };
    if (host_visible) {
      evict(of_kind);
    } else {
      while (context.allocated_bytes() + double(bytes) > context.budget_bytes() && std::any_of(pool.begin(), pool.end(), of_kind)) {
        VkBuffer largest = VK_NULL_HANDLE;
        VkDeviceSize size = 0;
        for (const Buffer& b : pool) {
          if (of_kind(b) && (largest == VK_NULL_HANDLE || b.size() > size)) largest = b.handle(), size = b.size();
        }
        evict([largest](const Buffer& b) { return b.handle() == largest; });
      }
    }
    ++report.allocations;
    try {
      return Buffer(context, bytes, host_visible);
    } catch (const DeviceMemoryExhausted&) {
      if (pool.empty()) throw;
      evict([](const Buffer&) { return true; });
      return Buffer(context, bytes, host_visible);
    }
  }
  void give(Buffer&& b) {
    if (b.handle() != VK_NULL_HANDLE) pool.push_back(std::move(b));
  }
  // Frees the pooled buffers `which` selects, once the recorded commands
  // that may still use them have run.
  template <typename Which>
  void evict(const Which& which) {
    if (std::none_of(pool.begin(), pool.end(), which)) return;
    flush();
    pool.erase(std::remove_if(pool.begin(), pool.end(), which), pool.end());
  }

  // --- one submission for all the host need not see in between ------------

  bool recording = false;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  // The open command buffer, with room for `dispatches` more dispatches.
  VkCommandBuffer record(int dispatches) {
    if (recording && context.dispatches_left() < dispatches) flush();
    if (!recording) {
      cmd = context.begin();
      recording = true;
    }
    return cmd;
  }
  void flush() {
    if (!recording) return;
    recording = false;
    context.submit_and_wait();
  }

  // --- profiling: timestamps between a resident pass's steps ---------------

  std::vector<std::size_t> marks;  // each timestamp's slot in mark_ms
  std::vector<double> mark_ms;
  // Records a timestamp (once the commands before it are done) into `slot`
  // of mark_ms, when profiling.
  void mark(std::size_t slot) {
    if (!context.profiling() || marks.size() >= detail::Context::kTimestamps) return;
    context.timestamp(record(0), static_cast<std::uint32_t>(marks.size()));
    marks.push_back(slot);
  }
  // Per layer: conv start, conv end, epilogue start, epilogue end; then the
  // pass's start and end.
  static std::size_t slot(std::size_t layer, int step) { return layer * 4 + static_cast<std::size_t>(step); }
  void read_marks(std::size_t first, std::size_t last) {
    if (!context.profiling()) return;
    const std::vector<double> ms = context.timestamps_ms(static_cast<std::uint32_t>(marks.size()));
    for (std::size_t q = 0; q < marks.size(); ++q) mark_ms[marks[q]] = ms[q];
    const auto at = [&](std::size_t layer, int step) { return mark_ms[slot(layer, step)]; };
    const std::size_t layers = model->spec().layers.size();
    for (std::size_t i = first; i < last; ++i) {
      LayerTime t;
      t.name = model->spec().layers[i].name;
      t.conv_ms = at(i, 1) - at(i, 0);
      if (has_epilogue(model->spec().layers[i])) {
        t.epilogue_ms = at(i, 3) - at(i, 2);
        t.host_ms = at(i, 2) - at(i, 1);
      }
      report.layers.push_back(t);
    }
    report.device_ms = at(layers, 1) - at(layers, 0);
  }

  // A window of a device tensor's rows [a, b): the binding starts at an
  // aligned offset at or before row a.
  Window window(const Tensor& t, int a, int b) const {
    a = std::min(a, t.shape.rows - 1);
    b = std::max(b, a + 1);
    const VkDeviceSize bytes = row_bytes(t.shape);
    const VkDeviceSize start = VkDeviceSize(a) * bytes, end = std::max<VkDeviceSize>(VkDeviceSize(b) * bytes, start + 4);
    const VkDeviceSize offset = start / alignment() * alignment();
    return {t.device.handle(), offset, end - offset, static_cast<long long>(offset / VkDeviceSize(es()))};
  }
  static Window whole(const Buffer& b) { return {b.handle(), 0, VK_WHOLE_SIZE, 0}; }

  // z = scale·y + shift per channel from layer i's statistics (rows added
  // in float64, in order, then folded as the CPU forward folds them), into
  // the layer's own slice of `affine`: an earlier layer's epilogue may not
  // have run yet.
  void fold_statistics(std::size_t i, int rows, int cols) {
    const LayerSpec& l = model->spec().layers[i];
    const model::LayerWeights& w = model->weights()[i];
    float* values = affine.floats() + i * affine_stride / sizeof(float);
    if (l.normalizer == Normalizer::none) {
      for (int c = 0; c < l.cout; ++c) values[2 * c] = 1.0f, values[2 * c + 1] = 0.0f;
      return;
    }
    std::vector<double> sum(l.cout, 0.0), squares(l.cout, 0.0);
    const float* s = stats.floats();
    for (int y = 0; y < rows; ++y)
      for (int c = 0; c < l.cout; ++c) {
        sum[c] += s[(static_cast<std::size_t>(y) * l.cout + c) * 2];
        squares[c] += s[(static_cast<std::size_t>(y) * l.cout + c) * 2 + 1];
      }
    std::vector<float> scale(l.cout), shift(l.cout);
    model::fold_normaliser(model->spec(), l, w, sum.data(), squares.data(), double(rows) * cols, scale.data(), shift.data());
    for (int c = 0; c < l.cout; ++c) values[2 * c] = scale[c], values[2 * c + 1] = shift[c];
  }

  void record_conv(VkCommandBuffer cmd, std::size_t i, const Shape& in, const Shape& out, int a, int b, const Window& src,
                   const Window& dst) {
    const LayerSpec& l = model->spec().layers[i];
    ConvPush p{in.rows, in.cols, in.channels, int(src.first_element), out.cols, out.channels, a, int(dst.first_element), b - a,
               l.kernel_h, l.kernel_w, l.dilation, l.stride, l.transposed ? 1 : 0, weight_groups(l)};
    const bool vector_input = context.vector_loads() && in.channels % 4 == 0 && src.first_element % 4 == 0;
    const int per = conv_groups(l);
    const int columns = context.conv_columns() * context.conv_pixels();
    context.dispatch(cmd, Pipeline::conv(per, vector_input),
                     {src, dst, layer_kernel(i), layer_bias(i)}, &p, sizeof p,
                     static_cast<std::uint32_t>((out.cols + columns - 1) / columns), static_cast<std::uint32_t>((b - a + 3) / 4),
                     static_cast<std::uint32_t>(weight_groups(l) / per));
    if (l.normalizer != Normalizer::none) {
      context.barrier(cmd);
      StatsPush s{out.cols, out.channels, int(dst.first_element), a};
      context.dispatch(cmd, detail::kStatsPipeline, {dst, whole(stats)}, &s, sizeof s, static_cast<std::uint32_t>(b - a), 1, 1);
    }
  }

  void record_finish(VkCommandBuffer cmd, std::size_t i, const Shape& out, int a, int b, const Window& values,
                     const std::optional<Window>& residual) {
    const LayerSpec& l = model->spec().layers[i];
    const long long first = static_cast<long long>(a) * out.row_values();
    const long long count = static_cast<long long>(b - a) * out.row_values();
    FinishPush p{int(count), out.channels, int(values.first_element), int(first),
                 residual ? int(residual->first_element) : -1, activation_code(l), l.negative_slope};
    const long long groups = (count + 255) / 256;
    const std::uint32_t x = static_cast<std::uint32_t>(std::min<long long>(groups, 65535));
    const std::uint32_t y = static_cast<std::uint32_t>((groups + 65534) / 65535);
    context.dispatch(cmd, detail::kFinishPipeline, {values, layer_affine(i), residual ? *residual : layer_affine(i)}, &p, sizeof p, x, y, 1);
  }

  // Bands of a layer's output rows: each dispatch's windows within the
  // binding limit, and (in parts) all of a band's windows within `room`.
  int band_rows(std::size_t i, bool parts, double room) const {
    const LayerSpec& l = model->spec().layers[i];
    const Shape& in = plan.shapes[i];
    const Shape& out = plan.shapes[i + 1];
    const double slack = double(alignment());
    const auto fits = [&](int rows) {
      const double in_bytes = double(input_window_rows(l, rows, in.rows)) * double(row_bytes(in)) + slack;
      const double out_bytes = double(rows) * double(row_bytes(out)) + slack;
      if (in_bytes > max_window() || out_bytes > max_window()) return false;
      return !parts || band_bytes(i, rows) <= room;
    };
    return largest_band(std::min(out.rows, kMaxBandRows), fits);
  }

  // Device memory of a band's windows in parts: input, output, residual.
  double band_bytes(std::size_t i, int rows) const {
    const LayerSpec& l = model->spec().layers[i];
    const double in_bytes = double(input_window_rows(l, rows, plan.shapes[i].rows)) * double(row_bytes(plan.shapes[i]));
    const double out_bytes = double(rows) * double(row_bytes(plan.shapes[i + 1]));
    return in_bytes + out_bytes * (plan.residual[i] >= 0 ? 2 : 1);
  }

  // The network's output from its stored values, as float32.
  cv::Mat from_stored(const void* values, const Shape& shape) const {
    const cv::Mat view(shape.rows, shape.cols, es() == 2 ? CV_16FC(shape.channels) : CV_32FC(shape.channels), const_cast<void*>(values));
    cv::Mat result;
    view.convertTo(result, CV_32F);
    return result;
  }

  // --- resident: every live tensor on the device --------------------------

  // Layers [first, last) on `input`, tensor `first` of the plan. Everything
  // between two normalised layers' statistics is one submission: the host
  // waits only where it folds statistics, and at the end.
  cv::Mat run_resident(const cv::Mat& input, std::size_t first, std::size_t last) {
    const auto& layers = model->spec().layers;
    std::vector<Tensor> tensors(plan.shapes.size());
    for (std::size_t t = 0; t < tensors.size(); ++t) tensors[t].shape = plan.shapes[t];
    const auto tensor_bytes = [&](std::size_t t) { return VkDeviceSize(plan.shapes[t].elements()) * es(); };
    tensors[first].device = take(tensor_bytes(first), false);
    Buffer upload = take(tensor_bytes(first), true);
    store(input, upload.mapped(), es());
    marks.clear();
    mark_ms.assign(slot(layers.size(), 2), 0.0);
    mark(slot(layers.size(), 0));
    context.copy(record(0), upload, 0, tensors[first].device, 0, upload.size());
    context.barrier(cmd);
    for (std::size_t i = first; i < last; ++i) {
      const LayerSpec& l = layers[i];
      const Shape& in = plan.shapes[i];
      const Shape& out = plan.shapes[i + 1];
      tensors[i + 1].device = take(tensor_bytes(i + 1), false);
      const int band = band_rows(i, false, 0);
      if (band == 0) throw Error("Vulkan: one row of layer '" + l.name + "' exceeds the device's storage-buffer range");
      report.band_rows = std::max(report.band_rows, band);
      mark(slot(i, 0));
      for (int a = 0; a < out.rows; a += band) {
        const int b = std::min(out.rows, a + band);
        const auto [ia, ib] = input_rows(l, a, b, in.rows);
        record_conv(record(2), i, in, out, a, b, window(tensors[i], ia, ib), window(tensors[i + 1], a, b));
      }
      context.barrier(record(0));
      mark(slot(i, 1));
      if (has_epilogue(l)) {
        if (l.normalizer != Normalizer::none) flush();  // the host reads the statistics
        fold_statistics(i, out.rows, out.cols);
        mark(slot(i, 2));
        for (int a = 0; a < out.rows; a += band) {
          const int b = std::min(out.rows, a + band);
          std::optional<Window> residual;
          if (plan.residual[i] >= 0) residual = window(tensors[plan.residual[i]], a, b);
          record_finish(record(1), i, out, a, b, window(tensors[i + 1], a, b), residual);
        }
        context.barrier(record(0));
        mark(slot(i, 3));
      }
      for (std::size_t t = 0; t <= i; ++t) {
        if (plan.last_use[t] <= static_cast<int>(i)) give(std::move(tensors[t].device));
      }
    }
    Buffer download = take(tensor_bytes(last), true);
    context.copy(record(0), tensors[last].device, 0, download, 0, download.size());
    context.barrier(cmd);
    mark(slot(layers.size(), 1));
    flush();
    read_marks(first, last);
    cv::Mat result = from_stored(download.mapped(), plan.shapes[last]);
    give(std::move(tensors[last].device));
    give(std::move(upload));
    give(std::move(download));
    return result;
  }

  // --- parts: tensors in host memory, each band copied in and out ---------

  cv::Mat run_parts(const cv::Mat& input, std::size_t first, std::size_t last, double room) {
    const auto& layers = model->spec().layers;
    std::vector<Tensor> tensors(plan.shapes.size());
    for (std::size_t t = 0; t < tensors.size(); ++t) tensors[t].shape = plan.shapes[t];
    tensors[first].host.resize(static_cast<std::size_t>(plan.shapes[first].elements()) * es());
    store(input, tensors[first].host.data(), es());
    for (std::size_t i = first; i < last; ++i) {
      const LayerSpec& l = layers[i];
      const Shape& out = plan.shapes[i + 1];
      tensors[i + 1].host.resize(static_cast<std::size_t>(out.elements()) * es());
      // A refused allocation halves the band; later layers then plan
      // within what the device did give.
      int band = band_rows(i, true, room);
      bool refused = false;
      for (;;) {
        if (band == 0) {
          const auto mib = [](double bytes) { return std::to_string(static_cast<long long>(std::ceil(bytes / (1 << 20)))) + " MiB"; };
          throw Error("Vulkan: not enough device memory for one row of layer '" + l.name + "' of a " +
                      std::to_string(plan.shapes[0].cols) + "-pixel-wide image: it needs " + mib(band_bytes(i, 1)) +
                      ", the budget is " + mib(room) + (refused ? " and the device refused that" : "") + " (use --device cpu)");
        }
        try {
          run_layer_in_parts(i, band, tensors);
          report.band_rows = std::max(report.band_rows, band);
          if (refused) room = std::min(room, band_bytes(i, band));
          break;
        } catch (const DeviceMemoryExhausted&) {
          ++report.retries;
          refused = true;
          band /= 2;
        }
      }
      for (std::size_t t = 0; t <= i; ++t) {
        if (plan.last_use[t] <= static_cast<int>(i)) std::vector<std::uint8_t>().swap(tensors[t].host);
      }
    }
    return from_stored(tensors[last].host.data(), plan.shapes[last]);
  }

  void run_layer_in_parts(std::size_t i, int band, std::vector<Tensor>& tensors) {
    const LayerSpec& l = model->spec().layers[i];
    const Shape& in = plan.shapes[i];
    const Shape& out = plan.shapes[i + 1];
    const VkDeviceSize in_bytes = VkDeviceSize(input_window_rows(l, band, in.rows)) * row_bytes(in);
    const VkDeviceSize out_bytes = VkDeviceSize(band) * row_bytes(out);
    Buffer in_window(context, in_bytes, false), out_window(context, out_bytes, false);
    Buffer residual_window;
    if (plan.residual[i] >= 0) residual_window = Buffer(context, out_bytes, false);
    Buffer in_stage(context, in_bytes, true), out_stage(context, out_bytes, true);

    for (int a = 0; a < out.rows; a += band) {
      const int b = std::min(out.rows, a + band);
      const auto [ia, ib] = input_rows(l, a, b, in.rows);
      const int rows_in = std::max(ib - ia, 1);
      const int first_in = std::min(ia, in.rows - 1);
      std::memcpy(in_stage.mapped(), tensors[i].host.data() + first_in * row_bytes(in), VkDeviceSize(rows_in) * row_bytes(in));
      const Window src{in_window.handle(), 0, VK_WHOLE_SIZE, static_cast<long long>(first_in) * static_cast<long long>(in.row_values())};
      const Window dst{out_window.handle(), 0, VK_WHOLE_SIZE, static_cast<long long>(a) * static_cast<long long>(out.row_values())};
      context.submit([&](VkCommandBuffer cmd) {
        context.copy(cmd, in_stage, 0, in_window, 0, VkDeviceSize(rows_in) * row_bytes(in));
        context.barrier(cmd);
        record_conv(cmd, i, in, out, a, b, src, dst);
        context.barrier(cmd);
        context.copy(cmd, out_window, 0, out_stage, 0, VkDeviceSize(b - a) * row_bytes(out));
      });
      std::memcpy(tensors[i + 1].host.data() + a * row_bytes(out), out_stage.mapped(), VkDeviceSize(b - a) * row_bytes(out));
    }
    if (!has_epilogue(l)) return;
    fold_statistics(i, out.rows, out.cols);
    Buffer residual_stage;
    if (plan.residual[i] >= 0) residual_stage = Buffer(context, out_bytes, true);
    for (int a = 0; a < out.rows; a += band) {
      const int b = std::min(out.rows, a + band);
      const VkDeviceSize bytes = VkDeviceSize(b - a) * row_bytes(out);
      std::memcpy(out_stage.mapped(), tensors[i + 1].host.data() + a * row_bytes(out), bytes);
      if (plan.residual[i] >= 0) std::memcpy(residual_stage.mapped(), tensors[plan.residual[i]].host.data() + a * row_bytes(out), bytes);
      const long long first = static_cast<long long>(a) * static_cast<long long>(out.row_values());
      const Window values{out_window.handle(), 0, VK_WHOLE_SIZE, first};
      std::optional<Window> residual;
      if (plan.residual[i] >= 0) residual = Window{residual_window.handle(), 0, VK_WHOLE_SIZE, first};
      context.submit([&](VkCommandBuffer cmd) {
        context.copy(cmd, out_stage, 0, out_window, 0, bytes);
        if (residual) context.copy(cmd, residual_stage, 0, residual_window, 0, bytes);
        context.barrier(cmd);
        record_finish(cmd, i, out, a, b, values, residual);
        context.barrier(cmd);
        context.copy(cmd, out_window, 0, out_stage, 0, bytes);
      });
      std::memcpy(tensors[i + 1].host.data() + a * row_bytes(out), out_stage.mapped(), bytes);
    }
  }

  // --- sizes -----------------------------------------------------------------

  static double weight_bytes(const NetworkSpec& spec) {
    double bytes = 0;
    for (const auto& l : spec.layers) bytes += (double(l.kernel_h) * l.kernel_w * l.cin + 1) * weight_groups(l) * 16 + 512;
    return bytes;
  }

  // The most activation values alive at once: a layer's input and output
  // and the inputs later residuals still need.
  static double live_peak_elements(const NetworkSpec& spec, const Plan& plan) {
    double peak = 0;
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      double live = plan.shapes[i + 1].elements();
      for (std::size_t t = 0; t <= i; ++t) {
        if (plan.last_use[t] >= static_cast<int>(i)) live += plan.shapes[t].elements();
      }
      peak = std::max(peak, live);
    }
    return peak;
  }

  static double resident_peak(const NetworkSpec& spec, const Plan& plan, int element_bytes) {
    return live_peak_elements(spec, plan) * element_bytes + weight_bytes(spec);
  }
};

VulkanExecutor::VulkanExecutor(VulkanOptions options) : impl_(std::make_unique<Impl>(options)) {}
VulkanExecutor::~VulkanExecutor() = default;

std::string VulkanExecutor::name() const {
  return "vulkan (" + impl_->context.info().name + (impl_->es() == 2 ? ", fp16 storage" : "") + ")";
}
const DeviceInfo& VulkanExecutor::device() const { return impl_->context.info(); }
double VulkanExecutor::budget_bytes() const { return impl_->context.budget_bytes(); }
const RunReport& VulkanExecutor::last_run() const { return impl_->report; }
std::vector<std::string> VulkanExecutor::validation_messages() const { return impl_->context.messages(); }

double VulkanExecutor::resident_bytes(const NetworkSpec& spec, int rows, int cols) const {
  return Impl::resident_peak(spec, plan_tensors(spec, rows, cols), impl_->es());
}

double VulkanExecutor::peak_bytes(const NetworkSpec& spec, int rows, int cols) const {
  const Plan plan = plan_tensors(spec, rows, cols);
  if (Impl::resident_peak(spec, plan, impl_->es()) <= budget_bytes()) return 0;
  return Impl::live_peak_elements(spec, plan) * impl_->es();  // in parts: the live tensors in host memory
}

cv::Mat VulkanExecutor::forward(const model::Model& model, const cv::Mat& input) {
  const NetworkSpec& spec = model.spec();
  if (input.empty() || input.dims != 2 || input.depth() != CV_32F || input.channels() != spec.input_channels()) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.input_channels()) +
                "-channel float32 input, got " + std::to_string(input.channels()) + " channel(s)");
  }
  return forward_layers(model, input, input.rows, input.cols, 0, spec.layers.size());
}

cv::Mat VulkanExecutor::forward_layers(const model::Model& model, const cv::Mat& input, int rows, int cols, std::size_t first,
                                       std::size_t last) {
  const NetworkSpec& spec = model.spec();
  if (spec.weight_inputs() > 0) {
    throw Error("model '" + model.source() + "' has generated weights: run Model::specialised(planes) (Executor::run does)");
  }
  Impl& m = *impl_;
  m.report = {};
  m.model = &model;
  m.plan = plan_tensors(spec, rows, cols);
  for (const Shape& s : m.plan.shapes) {
    if (s.elements() >= double(std::numeric_limits<int>::max())) {
      throw Error("Vulkan: a " + std::to_string(cols) + "x" + std::to_string(rows) + " image is too large for model '" +
                  model.source() + "' (an activation of 2^31 values or more); use --device cpu");
    }
  }
  const Shape& in = m.plan.shapes[first];
  if (input.rows != in.rows || input.cols != in.cols || input.channels() != in.channels || !input.isContinuous()) {
    throw Error("Vulkan: internal: layer " + std::to_string(first) + "'s input has the wrong shape");
  }
  // The weights and every buffer stay with the executor for the next pass;
  // a recording a failure left open is dropped, never submitted.
  struct Reset {
    Impl& m;
    ~Reset() {
      m.recording = false;
      m.context.save_pipeline_cache();
      m.give(std::move(m.stats));
      m.give(std::move(m.affine));
      m.model = nullptr;
    }
  } reset{m};
  int widest = 1, tallest = 1;
  for (const Shape& s : m.plan.shapes) widest = std::max(widest, s.channels), tallest = std::max(tallest, s.rows);
  const double resident = Impl::resident_peak(spec, m.plan, m.es());
  try {
    m.upload_weights();
    m.stats = m.take(VkDeviceSize(tallest) * widest * 2 * sizeof(float), true);
    m.affine_stride = (VkDeviceSize(widest) * 2 * sizeof(float) + m.alignment() - 1) / m.alignment() * m.alignment();
    m.affine = m.take(m.affine_stride * spec.layers.size(), true);
  } catch (const DeviceMemoryExhausted&) {
    throw Error("Vulkan: not enough device memory for the weights of model '" + model.source() + "'");
  }
  const double budget = budget_bytes();
  if (resident <= budget) {
    try {
      cv::Mat out = m.run_resident(input, first, last);
      m.report.device_bytes = resident;
      return out;
    } catch (const DeviceMemoryExhausted&) {
      m.recording = false;
      ++m.report.retries;  // the budget was optimistic: run in parts
    }
  }
  // Parts allocate their own windows: the pooled activations give way.
  m.evict([](const detail::Buffer& b) { return !b.host_visible(); });
  m.report.parts = true;
  const double room = std::max(0.0, budget - Impl::weight_bytes(spec));
  cv::Mat out = m.run_parts(input, first, last, room);
  m.report.device_bytes = room;
  return out;
}

std::size_t VulkanExecutor::rerun_from(const NetworkSpec& spec) {
  if (spec.weight_inputs() == 0 || spec.input_planes() > 0) return 0;  // the planes change the input itself
  std::size_t k = spec.layers.size();
  for (std::size_t i = 0; i < spec.layers.size() && k == spec.layers.size(); ++i) {
    if (spec.layers[i].generated != model::Generated::none) k = i;
  }
  // A residual in the rerun part that adds the input of an earlier layer
  // needs that input rerun too.
  for (bool moved = true; moved;) {
    moved = false;
    for (std::size_t j = k; j < spec.layers.size(); ++j) {
      if (spec.layers[j].residual_from.empty()) continue;
      for (std::size_t r = 0; r < k; ++r) {
        if (spec.layers[r].name == spec.layers[j].residual_from) {
          k = r;
          moved = true;
        }
      }
    }
  }
  return k;
}

std::vector<Image> VulkanExecutor::run_planes(const model::Model& model, const Image& rgb,
                                              const std::vector<std::vector<float>>& plane_sets) {
  std::vector<Image> outputs;
  if (plane_sets.empty()) return outputs;
  const NetworkSpec& spec = model.spec();
  const std::size_t k = rerun_from(spec);
  if (k == 0) {
    for (const auto& planes : plane_sets) outputs.push_back(run(model, rgb, planes));
    return outputs;
  }
  require_image_shape(rgb, "model '" + model.source() + "'");
  if (rgb.channels() != spec.image_channels) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.image_channels) + "-channel images, got " +
                std::to_string(rgb.channels()));
  }
  for (const auto& planes : plane_sets) model.check_planes(planes);
  // The first set's specialised model runs the shared layers: they do not
  // depend on the planes.
  const model::Model shared = model.specialised(plane_sets[0]);
  const cv::Mat input = model::network_input(model, rgb, plane_sets[0]);
  const cv::Mat prefix = forward_layers(shared, input, input.rows, input.cols, 0, k);
  for (const auto& planes : plane_sets) {
    const model::Model specialised = model.specialised(planes);
    outputs.push_back(model::image_from_output(model, forward_layers(specialised, prefix, input.rows, input.cols, k, spec.layers.size())));
  }
  return outputs;
}

}  // namespace opforge::vk
