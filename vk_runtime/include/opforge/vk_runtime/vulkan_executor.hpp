#pragma once
// The Vulkan executor: the model's network as Vulkan compute shaders (GLSL
// compiled to SPIR-V at build time, embedded in the library), on any Vulkan
// 1.1 device, tested on Mesa's lavapipe.
//
// The Vulkan loader is opened at run time, so a machine without one still
// runs everything else (`--device cpu`); every Vulkan failure is an
// opforge::Error with one line. A layer runs as a convolution pass over
// bands of output rows, a statistics pass (per-row sums; the host adds the
// rows in float64, in order, as the CPU forward does) and an epilogue (the
// normaliser as one scale and shift per channel, the residual, the
// activation). When the activations do not fit the device's memory budget
// they live in host memory and each band is copied in and out ("parts");
// an allocation the device refuses is retried with smaller bands. The
// result is the same either way, and a run either returns the whole output
// or throws: never a partial image.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "opforge/model/executor.hpp"

namespace opforge::vk {

enum class DeviceKind { discrete, integrated, virtual_gpu, cpu, other };
const char* to_string(DeviceKind kind);

struct DeviceInfo {
  int index = 0;            ///< position in list_devices(): `--device-index`
  std::string name;
  DeviceKind kind = DeviceKind::other;
  std::string driver;       ///< driver name and version, as the driver reports them
  std::string vulkan_version;  ///< the device's, "1.3.230"
  double memory_bytes = 0;  ///< the largest device-local heap
  bool memory_budget = false;  ///< VK_EXT_memory_budget is supported
  bool fp16_storage = false;   ///< 16-bit storage buffers (VulkanOptions::fp16_storage)
  int subgroup_size = 0;       ///< the width of a conv workgroup's rows (8..64)
  int conv_pixels = 0;         ///< output pixels per conv invocation (set when a device is opened)
  bool conv_vector_loads = false;  ///< conv inputs read four channels per load (set when a device is opened)
  /// The cooperative-matrix (tensor core) extensions the device offers, with
  /// VK_NV_cooperative_matrix's shapes and types; empty if none. Not used
  /// by the shaders yet: reported for measurements.
  std::string cooperative_matrix;
};

/// Vulkan devices in the order they are preferred: discrete, integrated,
/// virtual, then CPU devices (stable within a kind). Throws Error when the
/// loader cannot be opened or no device is present.
std::vector<DeviceInfo> list_devices();

/// The loader library opened: $OPFORGE_VULKAN_LOADER when set (a test or
/// an unusual install), else libvulkan.so.1.
std::string loader_name();

struct VulkanOptions {
  /// Index into list_devices(); the first (most preferred) when unset.
  std::optional<int> device_index;
  /// Run under the Khronos validation layer and keep every message it
  /// reports (validation_messages()); Error if the layer is not installed.
  bool validation = false;
  /// Device memory the executor may use; the driver's budget when unset
  /// (VK_EXT_memory_budget, else 3/4 of the largest device-local heap).
  std::optional<double> budget_bytes;
  /// Testing: device allocations beyond this many bytes in all fail as the
  /// driver's VK_ERROR_OUT_OF_DEVICE_MEMORY would (the budget may claim more).
  std::optional<double> allocation_limit_bytes;
  /// Store activations as float16 (arithmetic stays float32): half the
  /// memory and bandwidth, values rounded to half precision between layers.
  /// Error if the device lacks 16-bit storage buffers.
  bool fp16_storage = false;
  /// Output pixels each conv invocation computes, 1..4 (4 when unset):
  /// benchmarks and tests set it.
  std::optional<int> conv_pixels;
  /// Whether the conv shader reads inputs whose channel count is a multiple
  /// of 4 four channels per load (else one); unset: on GPUs, not on CPU
  /// devices. Benchmarks and tests set it.
  std::optional<bool> conv_vector_loads;
  /// Time each layer's passes on the device (timestamps; RunReport::layers).
  /// Error if the device's compute queue has no timestamps.
  bool profile = false;
  /// The pipeline cache file's folder; empty: $XDG_CACHE_HOME/opforge (or
  /// ~/.cache/opforge); "none": no cache on disk.
  std::filesystem::path cache_directory;
};

/// One layer's time on the device (VulkanOptions::profile), milliseconds:
/// its convolution (and statistics), its epilogue, and the time between
/// them the device waited for the host (which folds the statistics).
struct LayerTime {
  std::string name;
  double conv_ms = 0, epilogue_ms = 0, host_ms = 0;
};

/// How the last forward pass ran.
struct RunReport {
  bool parts = false;       ///< activations in host memory, bands copied in and out
  int band_rows = 0;        ///< output rows per band of the widest layer
  int retries = 0;          ///< allocations refused and retried smaller
  double device_bytes = 0;  ///< device memory the pass allocated
  /// Whether the weights were uploaded (not still on the device from the
  /// last pass), and how many buffers a whole pass allocated rather than
  /// reused from the last (0 for another frame of the same size).
  bool weights_uploaded = false;
  int allocations = 0;
  /// With VulkanOptions::profile, of a pass on the device (not in parts):
  /// each layer's times, and the pass's from the input's upload to the
  /// output's download on the device's clock.
  std::vector<LayerTime> layers;
  double device_ms = 0;
};

class VulkanExecutor final : public model::Executor {
 public:
  explicit VulkanExecutor(VulkanOptions options = {});
  ~VulkanExecutor() override;
  VulkanExecutor(const VulkanExecutor&) = delete;
  VulkanExecutor& operator=(const VulkanExecutor&) = delete;

  std::string name() const override;
  const DeviceInfo& device() const;
  /// Host memory the pass may need besides its input: the activations when
  /// they run in parts (estimated against the device budget).
  double peak_bytes(const model::NetworkSpec& spec, int rows, int cols) const override;
  cv::Mat forward(const model::Model& model, const cv::Mat& input) override;

  /// The outputs for several plane values of one image, as run() gives
  /// each: the layers before rerun_from(spec) run once, the rest once per
  /// plane set (Fan et al.'s cheap tuning reruns only its last layers when
  /// only the parameter changes).
  std::vector<Image> run_planes(const model::Model& model, const Image& rgb, const std::vector<std::vector<float>>& plane_sets);
  /// The first layer whose result depends on the plane values: the first
  /// generated layer, moved back past any residual the rest adds; 0 when a
  /// plane is an input channel or nothing is generated.
  static std::size_t rerun_from(const model::NetworkSpec& spec);

  /// Device memory a pass with every activation on the device needs.
  double resident_bytes(const model::NetworkSpec& spec, int rows, int cols) const;
  double budget_bytes() const;
  const RunReport& last_run() const;
  /// Messages of the validation layer so far (warnings and errors), one line each.
  std::vector<std::string> validation_messages() const;

 private:
  /// Layers [first, last) on the input of layer `first` (for a network
  /// input of rows × cols), the output of layer last − 1.
  cv::Mat forward_layers(const model::Model& model, const cv::Mat& input, int rows, int cols, std::size_t first, std::size_t last);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace opforge::vk
