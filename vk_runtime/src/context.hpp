#pragma once
// One Vulkan instance, device and compute queue, the pipelines (made on
// first use) and buffers on it: the pieces the executor's passes are built
// from. Everything is destroyed with the Context.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"
#include "vulkan_api.hpp"

namespace opforge::vk::detail {

/// The device refused an allocation (or the testing limit did): the caller
/// retries with smaller parts.
class DeviceMemoryExhausted : public Error {
 public:
  using Error::Error;
};

class Context;

/// A buffer and its own memory: device-local, or host-visible and mapped.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Context& context, VkDeviceSize bytes, bool host_visible);
  ~Buffer();
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_; }
  bool host_visible() const { return mapped_ != nullptr; }
  VkDeviceSize size() const { return size_; }
  /// The mapped memory of a host-visible buffer (coherent).
  void* mapped() const { return mapped_; }
  float* floats() const { return static_cast<float*>(mapped_); }

 private:
  void release();
  Context* context_ = nullptr;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  VkDeviceSize size_ = 0, allocation_size_ = 0;
  void* mapped_ = nullptr;
  bool device_local_ = false;
};

/// A range of a buffer bound to one shader binding; `first_element` is the
/// tensor element at its start (what the shader subtracts).
struct Window {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0, range = 0;
  long long first_element = 0;
};

/// The conv pipeline computing `groups` × 4 output channels per
/// invocation (1..kMaxConvGroups), reading its input one channel or four
/// channels per load; the statistics pass; the epilogue.
inline constexpr int kMaxConvGroups = 8;
inline constexpr int kMaxConvPixels = 4;
struct Pipeline {
  int index;
  static Pipeline conv(int groups, bool vector_input) { return {groups - 1 + (vector_input ? kMaxConvGroups : 0)}; }
  static constexpr int stats_index = 2 * kMaxConvGroups, finish_index = 2 * kMaxConvGroups + 1;
  static constexpr int count = 2 * kMaxConvGroups + 2;
};
inline constexpr Pipeline kStatsPipeline{Pipeline::stats_index};
inline constexpr Pipeline kFinishPipeline{Pipeline::finish_index};

class Context {
 public:
  explicit Context(const VulkanOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Api& api() { return api_; }
  VkDevice device() const { return device_; }
  const DeviceInfo& info() const { return info_; }
  const VkPhysicalDeviceLimits& limits() const { return limits_; }
  double budget_bytes() const { return budget_; }
  double allocated_bytes() const { return allocated_; }
  /// Bytes per stored activation: 2 with fp16 storage, else 4.
  int element_bytes() const { return fp16_ ? 2 : 4; }
  /// Invocations per conv workgroup row: the subgroup size, 8..64.
  int conv_columns() const { return conv_columns_; }
  /// Output pixels per conv invocation, 1..kMaxConvPixels.
  int conv_pixels() const { return conv_pixels_; }
  /// Whether the conv shader reads inputs of 4k channels four at a time.
  bool vector_loads() const { return vector_loads_; }

  /// Allocates memory of a type with `properties` (host-visible ones
  /// coherent); device-local allocations count against the testing limit.
  VkDeviceMemory allocate(const VkMemoryRequirements& requirements, bool host_visible, bool& device_local);
  void release(VkDeviceMemory memory, VkDeviceSize bytes, bool device_local);

  /// Records commands into a fresh command buffer, submits it and waits.
  /// Descriptor sets come from `bind` within the recording and are freed
  /// after the wait.
  void submit(const std::function<void(VkCommandBuffer)>& record);
  /// The same in two steps, for a recording that spans several callers:
  /// begin() starts the command buffer, submit_and_wait() ends, submits it
  /// and waits.
  VkCommandBuffer begin();
  void submit_and_wait();
  /// Writes the pipeline cache file (atomically, best effort) when
  /// pipelines were made since it was read or last written.
  void save_pipeline_cache();
  /// Dispatches the current recording may still make.
  int dispatches_left() const { return sets_left_; }
  /// Within a recording: binds the pipeline, a descriptor set of the windows
  /// (in binding order) and the push constants, and dispatches.
  void dispatch(VkCommandBuffer cmd, Pipeline pipeline, const std::vector<Window>& windows, const void* push,
                std::size_t push_bytes, std::uint32_t x, std::uint32_t y, std::uint32_t z);
  /// Every earlier transfer and shader write visible to later transfers, shaders and the host.
  void barrier(VkCommandBuffer cmd);
  void copy(VkCommandBuffer cmd, const Buffer& from, VkDeviceSize from_offset, const Buffer& to, VkDeviceSize to_offset,
            VkDeviceSize bytes);

  std::vector<std::string> messages() const;

  /// Timestamps (VulkanOptions::profile): whether the device records them,
  /// recording query `query` (< kTimestamps) once the commands before it
  /// have completed, and the first `count` queries' times in milliseconds
  /// (after the submissions that wrote them have been waited for).
  static constexpr std::uint32_t kTimestamps = 1024;
  bool profiling() const { return query_pool_ != VK_NULL_HANDLE; }
  void timestamp(VkCommandBuffer cmd, std::uint32_t query);
  std::vector<double> timestamps_ms(std::uint32_t count);

 private:
  struct PipelineObjects {
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
    int bindings = 0;
  };
  void destroy();
  void create_instance(bool validation);
  void choose_device(const VulkanOptions& options);
  void create_device(bool fp16);
  void open_pipeline_cache(const VulkanOptions& options);
  void create_query_pool();
  const PipelineObjects& pipeline(Pipeline which);
  void create_pipeline(Pipeline which, const std::uint32_t* code, std::size_t bytes, int bindings,
                       std::size_t push_bytes, int groups = 0, bool vector_input = false);
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT types,
                                                   const VkDebugUtilsMessengerCallbackDataEXT* data, void* self);

  Api api_;
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  std::uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkCommandBuffer command_buffer_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool descriptor_pool_ = VK_NULL_HANDLE;
  VkQueryPool query_pool_ = VK_NULL_HANDLE;
  VkPipelineCache cache_ = VK_NULL_HANDLE;
  std::filesystem::path cache_file_;   // empty: no cache on disk
  std::vector<char> cache_saved_;      // what the file holds
  bool cache_grew_ = false;            // pipelines made since the last save
  std::uint64_t timestamp_mask_ = 0;
  int sets_left_ = 0;
  PipelineObjects pipelines_[Pipeline::count];
  DeviceInfo info_;
  VkPhysicalDeviceLimits limits_{};
  VkPhysicalDeviceMemoryProperties memory_{};
  double budget_ = 0;
  double allocated_ = 0;
  double allocation_limit_ = -1;
  double max_allocation_ = 0;
  bool fp16_ = false;
  int conv_columns_ = 16;
  int conv_pixels_ = 1;
  bool vector_loads_ = true;
  mutable std::mutex messages_mutex_;
  std::vector<std::string> messages_;
};

}  // namespace opforge::vk::detail
