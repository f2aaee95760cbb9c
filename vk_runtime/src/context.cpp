#include "context.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>
#include <unistd.h>

namespace opforge::vk::detail {
namespace {

// The shaders, compiled by glslc at build time (vk_runtime/shaders/).
constexpr std::uint32_t kConvSpirv[] =
#include "conv.spv.inc"
    ;
constexpr std::uint32_t kStatsSpirv[] =
#include "stats.spv.inc"
    ;
constexpr std::uint32_t kFinishSpirv[] =
#include "finish.spv.inc"
    ;
// The same with float16 activation storage (-DFP16).
constexpr std::uint32_t kConv16Spirv[] =
#include "conv16.spv.inc"
    ;
constexpr std::uint32_t kStats16Spirv[] =
#include "stats16.spv.inc"
    ;
constexpr std::uint32_t kFinish16Spirv[] =
#include "finish16.spv.inc"
    ;

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";
constexpr int kSetsPerSubmit = 512;

int kind_rank(DeviceKind kind) { return static_cast<int>(kind); }

DeviceKind kind_of(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceKind::discrete;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceKind::integrated;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return DeviceKind::virtual_gpu;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceKind::cpu;
    default: return DeviceKind::other;
  }
}

bool has_device_extension(Api& api, VkPhysicalDevice device, const char* name) {
  std::uint32_t count = 0;
  api.vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  api.vkEnumerateDeviceExtensionProperties(device, nullptr, &count, extensions.data());
  return std::any_of(extensions.begin(), extensions.end(),
                     [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

std::vector<VkQueueFamilyProperties> queue_families(Api& api, VkPhysicalDevice device) {
  std::uint32_t count = 0;
  api.vkGetPhysicalDeviceQueueFamilyProperties(device, &count, nullptr);
  std::vector<VkQueueFamilyProperties> families(count);
  api.vkGetPhysicalDeviceQueueFamilyProperties(device, &count, families.data());
  families.resize(count);
  return families;
}

bool has_compute_queue(Api& api, VkPhysicalDevice device, std::uint32_t* family) {
  const std::vector<VkQueueFamilyProperties> families = queue_families(api, device);
  for (std::uint32_t i = 0; i < families.size(); ++i) {
    if (families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
      if (family != nullptr) *family = i;
      return true;
    }
  }
  return false;
}

struct Found {
  VkPhysicalDevice handle;
  DeviceInfo info;
};

const char* component_name(VkComponentTypeNV type) {
  switch (type) {
    case VK_COMPONENT_TYPE_FLOAT16_NV: return "f16";
    case VK_COMPONENT_TYPE_FLOAT32_NV: return "f32";
    case VK_COMPONENT_TYPE_FLOAT64_NV: return "f64";
    case VK_COMPONENT_TYPE_SINT8_NV: return "s8";
    case VK_COMPONENT_TYPE_SINT32_NV: return "s32";
    case VK_COMPONENT_TYPE_UINT8_NV: return "u8";
    case VK_COMPONENT_TYPE_UINT32_NV: return "u32";
    default: return "?";
  }
}

// The matrix multiply-accumulate units the device offers to shaders
// (cooperative matrices): the extensions, and for VK_NV_cooperative_matrix
// each M×N×K shape and types A·B+C. Reported, not yet used by the shaders.
std::string cooperative_matrix_offer(Api& api, VkInstance instance, VkPhysicalDevice handle) {
  std::string offer;
  if (has_device_extension(api, handle, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) {
    offer = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
    const auto query = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
        api.vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
    std::uint32_t count = 0;
    if (query != nullptr && query(handle, &count, nullptr) == VK_SUCCESS && count > 0) {
      std::vector<VkCooperativeMatrixPropertiesNV> shapes(count, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
      if (query(handle, &count, shapes.data()) == VK_SUCCESS) {
        for (std::uint32_t i = 0; i < count; ++i) {
          const auto& c = shapes[i];
          offer += (i == 0 ? " (" : ", ") + std::to_string(c.MSize) + "x" + std::to_string(c.NSize) + "x" + std::to_string(c.KSize) + " " +
                   component_name(c.AType) + "*" + component_name(c.BType) + "+" + component_name(c.CType);
        }
        offer += ")";
      }
    }
  }
  if (has_device_extension(api, handle, "VK_KHR_cooperative_matrix")) offer += std::string(offer.empty() ? "" : "; ") + "VK_KHR_cooperative_matrix";
  return offer;
}

// The instance's devices with a compute queue, most preferred first.
std::vector<Found> enumerate(Api& api, VkInstance instance) {
  std::uint32_t count = 0;
  check(api.vkEnumeratePhysicalDevices(instance, &count, nullptr), "listing devices");
  std::vector<VkPhysicalDevice> handles(count);
  if (count > 0) check(api.vkEnumeratePhysicalDevices(instance, &count, handles.data()), "listing devices");
  std::vector<Found> found;
  for (VkPhysicalDevice handle : handles) {
    VkPhysicalDeviceProperties p;
    api.vkGetPhysicalDeviceProperties(handle, &p);
    if (p.apiVersion < VK_API_VERSION_1_1 || !has_compute_queue(api, handle, nullptr)) continue;
    VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &subgroup;
    api.vkGetPhysicalDeviceProperties2(handle, &p2);
    VkPhysicalDeviceMemoryProperties m;
    api.vkGetPhysicalDeviceMemoryProperties(handle, &m);
    DeviceInfo info;
    info.name = p.deviceName;
    info.kind = kind_of(p.deviceType);
    info.vulkan_version = std::to_string(VK_API_VERSION_MAJOR(p.apiVersion)) + "." + std::to_string(VK_API_VERSION_MINOR(p.apiVersion)) +
                          "." + std::to_string(VK_API_VERSION_PATCH(p.apiVersion));
    info.driver = "driver " + std::to_string(p.driverVersion);
    for (std::uint32_t h = 0; h < m.memoryHeapCount; ++h) {
      if (m.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
        info.memory_bytes = std::max(info.memory_bytes, double(m.memoryHeaps[h].size));
      }
    }
    info.memory_budget = has_device_extension(api, handle, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    info.subgroup_size = static_cast<int>(subgroup.subgroupSize);
    VkPhysicalDevice16BitStorageFeatures storage{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    features.pNext = &storage;
    api.vkGetPhysicalDeviceFeatures2(handle, &features);
    info.fp16_storage = storage.storageBuffer16BitAccess == VK_TRUE;
    info.cooperative_matrix = cooperative_matrix_offer(api, instance, handle);
    found.push_back({handle, info});
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const Found& a, const Found& b) { return kind_rank(a.info.kind) < kind_rank(b.info.kind); });
  for (std::size_t i = 0; i < found.size(); ++i) found[i].info.index = static_cast<int>(i);
  return found;
}

VkInstance make_instance(Api& api, bool validation, const VkDebugUtilsMessengerCreateInfoEXT* messenger) {
  std::vector<const char*> layers, extensions;
  if (validation) {
    std::uint32_t count = 0;
    api.vkEnumerateInstanceLayerProperties(&count, nullptr);
    std::vector<VkLayerProperties> available(count);
    api.vkEnumerateInstanceLayerProperties(&count, available.data());
    const bool present = std::any_of(available.begin(), available.end(), [](const VkLayerProperties& l) {
      return std::strcmp(l.layerName, kValidationLayer) == 0;
    });
    if (!present) {
      throw Error(std::string("Vulkan: the validation layer ") + kValidationLayer +
                  " is not installed (Debian: vulkan-validationlayers)");
    }
    layers.push_back(kValidationLayer);
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "opforge";
  app.pEngineName = "opforge";
  app.apiVersion = VK_API_VERSION_1_1;
  VkInstanceCreateInfo create{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  create.pNext = validation ? messenger : nullptr;
  create.pApplicationInfo = &app;
  create.enabledLayerCount = static_cast<std::uint32_t>(layers.size());
  create.ppEnabledLayerNames = layers.data();
  create.enabledExtensionCount = static_cast<std::uint32_t>(extensions.size());
  create.ppEnabledExtensionNames = extensions.data();
  VkInstance instance = VK_NULL_HANDLE;
  const VkResult result = api.vkCreateInstance(&create, nullptr, &instance);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER) throw Error("Vulkan: no Vulkan 1.1 driver found (no device; use --device cpu)");
  check(result, "creating the instance");
  load_instance_functions(api, instance);
  return instance;
}

std::filesystem::path cache_folder(const VulkanOptions& options) {
  if (!options.cache_directory.empty()) return options.cache_directory;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') return std::filesystem::path(xdg) / "opforge";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return std::filesystem::path(home) / ".cache" / "opforge";
  return {};
}

// A cache file's contents when its header names this device and driver
// (Vulkan's pipeline cache header, version one); anything else is ignored.
std::vector<char> read_cache(const std::filesystem::path& file, const VkPhysicalDeviceProperties& p) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 16 + VK_UUID_SIZE) return {};
  std::uint32_t header[4];
  std::memcpy(header, data.data(), sizeof header);
  if (header[0] < 16 + VK_UUID_SIZE || header[1] != VK_PIPELINE_CACHE_HEADER_VERSION_ONE || header[2] != p.vendorID ||
      header[3] != p.deviceID || std::memcmp(data.data() + 16, p.pipelineCacheUUID, VK_UUID_SIZE) != 0) {
    return {};
  }
  return data;
}

// Best effort, atomically: a cache that cannot be written only costs time.
void write_cache(const std::filesystem::path& file, const std::vector<char>& data) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return;
  const std::filesystem::path temporary = file.string() + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) return;
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(temporary, ec);
      return;
    }
  }
  std::filesystem::rename(temporary, file, ec);
  if (ec) std::filesystem::remove(temporary, ec);
}

}  // namespace

// ---------------------------------------------------------------------------

Buffer::Buffer(Context& context, VkDeviceSize bytes, bool host_visible) : context_(&context), size_(bytes) {
  Api& api = context.api();
  VkBufferCreateInfo create{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  create.size = std::max<VkDeviceSize>(bytes, 16);
  create.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  create.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  const VkResult made = api.vkCreateBuffer(context.device(), &create, nullptr, &buffer_);
  if (made == VK_ERROR_OUT_OF_DEVICE_MEMORY) throw DeviceMemoryExhausted("Vulkan: creating a buffer failed: out of device memory");
  check(made, "creating a buffer");
  VkMemoryRequirements requirements;
  api.vkGetBufferMemoryRequirements(context.device(), buffer_, &requirements);
  try {
    memory_ = context.allocate(requirements, host_visible, device_local_);
  } catch (...) {
    api.vkDestroyBuffer(context.device(), buffer_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    throw;
  }
  allocation_size_ = requirements.size;
  check(api.vkBindBufferMemory(context.device(), buffer_, memory_, 0), "binding buffer memory");
  if (host_visible) check(api.vkMapMemory(context.device(), memory_, 0, VK_WHOLE_SIZE, 0, &mapped_), "mapping memory");
}

Buffer::~Buffer() { release(); }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    context_ = std::exchange(other.context_, nullptr);
    buffer_ = std::exchange(other.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(other.memory_, VK_NULL_HANDLE);
    size_ = std::exchange(other.size_, 0);
    allocation_size_ = std::exchange(other.allocation_size_, 0);
    mapped_ = std::exchange(other.mapped_, nullptr);
    device_local_ = other.device_local_;
  }
  return *this;
}

void Buffer::release() {
  if (context_ == nullptr) return;
  Api& api = context_->api();
  if (buffer_ != VK_NULL_HANDLE) api.vkDestroyBuffer(context_->device(), buffer_, nullptr);
  if (memory_ != VK_NULL_HANDLE) context_->release(memory_, allocation_size_, device_local_);
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  context_ = nullptr;
}

// ---------------------------------------------------------------------------

Context::Context(const VulkanOptions& options) : api_(global_api()) {
  if (options.allocation_limit_bytes) allocation_limit_ = *options.allocation_limit_bytes;
  try {
    create_instance(options.validation);
    choose_device(options);
    if (options.fp16_storage && !info_.fp16_storage) {
      throw Error("Vulkan: " + info_.name + " has no 16-bit storage buffers (storageBuffer16BitAccess): fp16 storage is not available");
    }
    fp16_ = options.fp16_storage;
    create_device(fp16_);
    if (options.profile) create_query_pool();
    open_pipeline_cache(options);
  } catch (...) {
    destroy();
    throw;
  }
  if (options.budget_bytes) budget_ = *options.budget_bytes;
}

Context::~Context() { destroy(); }

void Context::destroy() {
  if (device_ != VK_NULL_HANDLE) {
    api_.vkDeviceWaitIdle(device_);
    for (auto& p : pipelines_) {
      if (p.pipeline != VK_NULL_HANDLE) api_.vkDestroyPipeline(device_, p.pipeline, nullptr);
      if (p.layout != VK_NULL_HANDLE) api_.vkDestroyPipelineLayout(device_, p.layout, nullptr);
      if (p.set_layout != VK_NULL_HANDLE) api_.vkDestroyDescriptorSetLayout(device_, p.set_layout, nullptr);
      p = {};
    }
    if (query_pool_ != VK_NULL_HANDLE) api_.vkDestroyQueryPool(device_, query_pool_, nullptr);
    if (cache_ != VK_NULL_HANDLE) api_.vkDestroyPipelineCache(device_, cache_, nullptr);
    if (descriptor_pool_ != VK_NULL_HANDLE) api_.vkDestroyDescriptorPool(device_, descriptor_pool_, nullptr);
    if (fence_ != VK_NULL_HANDLE) api_.vkDestroyFence(device_, fence_, nullptr);
    if (command_pool_ != VK_NULL_HANDLE) api_.vkDestroyCommandPool(device_, command_pool_, nullptr);
    api_.vkDestroyDevice(device_, nullptr);
    device_ = VK_NULL_HANDLE;
  }
  if (instance_ != VK_NULL_HANDLE) {
    if (messenger_ != VK_NULL_HANDLE) api_.vkDestroyDebugUtilsMessengerEXT(instance_, messenger_, nullptr);
    api_.vkDestroyInstance(instance_, nullptr);
    instance_ = VK_NULL_HANDLE;
    messenger_ = VK_NULL_HANDLE;
  }
}

VKAPI_ATTR VkBool32 VKAPI_CALL Context::on_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                   VkDebugUtilsMessageTypeFlagsEXT, const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                   void* self) {
  auto* context = static_cast<Context*>(self);
  const char* level = (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) ? "error" : "warning";
  std::lock_guard lock(context->messages_mutex_);
  context->messages_.push_back(std::string(level) + ": " + (data != nullptr && data->pMessage != nullptr ? data->pMessage : "?"));
  return VK_FALSE;
}

std::vector<std::string> Context::messages() const {
  std::lock_guard lock(messages_mutex_);
  return messages_;
}

void Context::create_instance(bool validation) {
  VkDebugUtilsMessengerCreateInfoEXT messenger{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  messenger.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  messenger.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                          VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  messenger.pfnUserCallback = &Context::on_message;
  messenger.pUserData = this;
  instance_ = make_instance(api_, validation, &messenger);
  if (validation) {
    if (api_.vkCreateDebugUtilsMessengerEXT == nullptr) throw Error("Vulkan: the validation layer lacks VK_EXT_debug_utils");
    check(api_.vkCreateDebugUtilsMessengerEXT(instance_, &messenger, nullptr, &messenger_), "creating the debug messenger");
  }
}

void Context::choose_device(const VulkanOptions& options) {
  const std::vector<Found> found = enumerate(api_, instance_);
  if (found.empty()) throw Error("Vulkan: no Vulkan 1.1 device with a compute queue found (use --device cpu)");
  int index = 0;
  if (options.device_index) {
    index = *options.device_index;
    if (index < 0 || index >= static_cast<int>(found.size())) {
      throw Error("--device-index " + std::to_string(index) + " is out of range: valid 0.." +
                  std::to_string(found.size() - 1) + " (opforge infer --list-devices)");
    }
  }
  physical_ = found[index].handle;
  info_ = found[index].info;
  VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceMaintenance3Properties maintenance{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  maintenance.pNext = &subgroup;
  VkPhysicalDeviceProperties2 p{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p.pNext = &maintenance;
  api_.vkGetPhysicalDeviceProperties2(physical_, &p);
  // A conv workgroup is one subgroup wide (32 on NVIDIA, 32 or 64 on AMD,
  // 8 on lavapipe with AVX2), within what the device allows.
  conv_columns_ = std::clamp(static_cast<int>(subgroup.subgroupSize), 8, 64);
  while (conv_columns_ * 4 > static_cast<int>(p.properties.limits.maxComputeWorkGroupInvocations) && conv_columns_ > 1) conv_columns_ /= 2;
  // Pixels per conv invocation: four, so that each weight loaded feeds four
  // pixels' multiply-adds. On lavapipe, CAN24 on a 400x300 crop: 2.18 s at
  // one pixel, 1.84 s at two, 1.82 s at four.
  if (options.conv_pixels) {
    if (*options.conv_pixels < 1 || *options.conv_pixels > kMaxConvPixels) {
      throw Error("Vulkan: conv pixels per invocation " + std::to_string(*options.conv_pixels) + " is out of range: valid 1.." +
                  std::to_string(kMaxConvPixels));
    }
    conv_pixels_ = *options.conv_pixels;
  } else {
    conv_pixels_ = kMaxConvPixels;
  }
  info_.conv_pixels = conv_pixels_;
  // Four input channels per load on a GPU (a quarter of the load
  // instructions of the inner loop); one on a CPU device, where lavapipe
  // gathers each vec4 lane by lane (400x300 CAN24: 2.01 s against 1.78 s).
  vector_loads_ = options.conv_vector_loads.value_or(info_.kind != DeviceKind::cpu);
  info_.conv_vector_loads = vector_loads_;
  limits_ = p.properties.limits;
  max_allocation_ = double(maintenance.maxMemoryAllocationSize);
  api_.vkGetPhysicalDeviceMemoryProperties(physical_, &memory_);
  has_compute_queue(api_, physical_, &queue_family_);

  // The budget: what the driver says this process may use of the largest
  // device-local heap, less what is in use; else 3/4 of the heap.
  std::uint32_t heap = 0;
  for (std::uint32_t h = 0; h < memory_.memoryHeapCount; ++h) {
    if ((memory_.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
        memory_.memoryHeaps[h].size >= memory_.memoryHeaps[heap].size) {
      heap = h;
    }
  }
  budget_ = 0.75 * double(memory_.memoryHeaps[heap].size);
  if (info_.memory_budget) {
    VkPhysicalDeviceMemoryBudgetPropertiesEXT b{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 m{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
    m.pNext = &b;
    api_.vkGetPhysicalDeviceMemoryProperties2(physical_, &m);
    if (b.heapBudget[heap] > 0) budget_ = 0.9 * (double(b.heapBudget[heap]) - double(b.heapUsage[heap]));
  }
}

void Context::create_device(bool fp16) {
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  queue.queueFamilyIndex = queue_family_;
  queue.queueCount = 1;
  queue.pQueuePriorities = &priority;
  std::vector<const char*> extensions;
  if (info_.memory_budget) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  VkPhysicalDevice16BitStorageFeatures storage{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  storage.storageBuffer16BitAccess = VK_TRUE;
  VkDeviceCreateInfo create{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  if (fp16) create.pNext = &storage;
  create.queueCreateInfoCount = 1;
  create.pQueueCreateInfos = &queue;
  create.enabledExtensionCount = static_cast<std::uint32_t>(extensions.size());
  create.ppEnabledExtensionNames = extensions.data();
  check(api_.vkCreateDevice(physical_, &create, nullptr, &device_), "creating the device");
  load_device_functions(api_, device_);
  api_.vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  VkCommandPoolCreateInfo pool{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pool.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
  pool.queueFamilyIndex = queue_family_;
  check(api_.vkCreateCommandPool(device_, &pool, nullptr, &command_pool_), "creating a command pool");
  VkCommandBufferAllocateInfo allocate{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  allocate.commandPool = command_pool_;
  allocate.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  allocate.commandBufferCount = 1;
  check(api_.vkAllocateCommandBuffers(device_, &allocate, &command_buffer_), "allocating a command buffer");
  VkFenceCreateInfo fence{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  check(api_.vkCreateFence(device_, &fence, nullptr, &fence_), "creating a fence");

  const VkDescriptorPoolSize sizes{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 4 * kSetsPerSubmit};
  VkDescriptorPoolCreateInfo descriptors{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  descriptors.maxSets = kSetsPerSubmit;
  descriptors.poolSizeCount = 1;
  descriptors.pPoolSizes = &sizes;
  check(api_.vkCreateDescriptorPool(device_, &descriptors, nullptr, &descriptor_pool_), "creating a descriptor pool");
  sets_left_ = kSetsPerSubmit;
}

void Context::open_pipeline_cache(const VulkanOptions& options) {
  VkPhysicalDeviceProperties p;
  api_.vkGetPhysicalDeviceProperties(physical_, &p);
  if (options.cache_directory != "none") {
    const std::filesystem::path folder = cache_folder(options);
    if (!folder.empty()) {
      char uuid[2 * VK_UUID_SIZE + 1];
      for (unsigned i = 0; i < VK_UUID_SIZE; ++i) std::snprintf(uuid + 2 * i, 3, "%02x", p.pipelineCacheUUID[i]);
      char name[96];
      std::snprintf(name, sizeof name, "vulkan-pipelines-%04x-%04x-%s.bin", p.vendorID, p.deviceID, uuid);
      cache_file_ = folder / name;
    }
  }
  cache_saved_ = cache_file_.empty() ? std::vector<char>() : read_cache(cache_file_, p);
  VkPipelineCacheCreateInfo cache_info{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  cache_info.initialDataSize = cache_saved_.size();
  cache_info.pInitialData = cache_saved_.empty() ? nullptr : cache_saved_.data();
  if (api_.vkCreatePipelineCache(device_, &cache_info, nullptr, &cache_) != VK_SUCCESS) {
    cache_info.initialDataSize = 0;  // the driver refused the file's data: start empty
    cache_info.pInitialData = nullptr;
    cache_saved_.clear();
    check(api_.vkCreatePipelineCache(device_, &cache_info, nullptr, &cache_), "creating a pipeline cache");
  }
}

void Context::save_pipeline_cache() {
  if (cache_file_.empty() || !cache_grew_) return;
  cache_grew_ = false;
  std::size_t size = 0;
  if (api_.vkGetPipelineCacheData(device_, cache_, &size, nullptr) != VK_SUCCESS || size == 0) return;
  std::vector<char> data(size);
  if (api_.vkGetPipelineCacheData(device_, cache_, &size, data.data()) != VK_SUCCESS) return;
  data.resize(size);
  if (data == cache_saved_) return;
  write_cache(cache_file_, data);
  cache_saved_ = std::move(data);
}

// Each pipeline is made the first time a pass dispatches it: a network uses
// two or three of the conv shader's sixteen variants.
const Context::PipelineObjects& Context::pipeline(Pipeline which) {
  PipelineObjects& p = pipelines_[which.index];
  if (p.pipeline != VK_NULL_HANDLE) return p;
  // The shader's float32 or float16-storage build.
  const auto make = [&](const auto& code, const auto& code16, int bindings, std::size_t push_bytes, int groups = 0,
                        bool vector_input = false) {
    if (fp16_) create_pipeline(which, code16, sizeof code16, bindings, push_bytes, groups, vector_input);
    else create_pipeline(which, code, sizeof code, bindings, push_bytes, groups, vector_input);
  };
  if (which.index < Pipeline::stats_index) {
    make(kConvSpirv, kConv16Spirv, 4, 15 * sizeof(int), which.index % kMaxConvGroups + 1, which.index >= kMaxConvGroups);
  } else if (which.index == Pipeline::stats_index) {
    make(kStatsSpirv, kStats16Spirv, 2, 4 * sizeof(int));
  } else {
    make(kFinishSpirv, kFinish16Spirv, 3, 7 * sizeof(int));
  }
  cache_grew_ = true;
  return p;
}

void Context::create_pipeline(Pipeline which, const std::uint32_t* code, std::size_t bytes, int bindings,
                              std::size_t push_bytes, int groups, bool vector_input) {
  PipelineObjects& p = pipelines_[which.index];
  p.bindings = bindings;
  std::vector<VkDescriptorSetLayoutBinding> slots(bindings);
  for (int b = 0; b < bindings; ++b) {
    slots[b] = {};
    slots[b].binding = static_cast<std::uint32_t>(b);
    slots[b].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    slots[b].descriptorCount = 1;
    slots[b].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo set{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  set.bindingCount = static_cast<std::uint32_t>(bindings);
  set.pBindings = slots.data();
  check(api_.vkCreateDescriptorSetLayout(device_, &set, nullptr, &p.set_layout), "creating a descriptor set layout");
  const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, static_cast<std::uint32_t>(push_bytes)};
  VkPipelineLayoutCreateInfo layout{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  layout.setLayoutCount = 1;
  layout.pSetLayouts = &p.set_layout;
  layout.pushConstantRangeCount = 1;
  layout.pPushConstantRanges = &push;
  check(api_.vkCreatePipelineLayout(device_, &layout, nullptr, &p.layout), "creating a pipeline layout");
  VkShaderModuleCreateInfo module_info{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  module_info.codeSize = bytes;
  module_info.pCode = code;
  VkShaderModule module = VK_NULL_HANDLE;
  check(api_.vkCreateShaderModule(device_, &module_info, nullptr, &module), "creating a shader module");
  VkComputePipelineCreateInfo create{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  create.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  create.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  create.stage.module = module;
  create.stage.pName = "main";
  const int constants[4] = {groups, conv_columns_, conv_pixels_, vector_input ? 1 : 0};
  const VkSpecializationMapEntry entries[4] = {
      {0, 0, sizeof(int)}, {1, sizeof(int), sizeof(int)}, {2, 2 * sizeof(int), sizeof(int)}, {3, 3 * sizeof(int), sizeof(int)}};
  const VkSpecializationInfo specialisation{4, entries, sizeof constants, constants};
  if (groups > 0) create.stage.pSpecializationInfo = &specialisation;
  create.layout = p.layout;
  const VkResult made = api_.vkCreateComputePipelines(device_, cache_, 1, &create, nullptr, &p.pipeline);
  api_.vkDestroyShaderModule(device_, module, nullptr);
  check(made, "creating a compute pipeline");
}

void Context::create_query_pool() {
  const std::uint32_t bits = queue_families(api_, physical_)[queue_family_].timestampValidBits;
  if (bits == 0 || limits_.timestampPeriod <= 0) {
    throw Error("Vulkan: " + info_.name + " cannot time its compute queue (no timestamps): profiling is not available");
  }
  timestamp_mask_ = bits >= 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << bits) - 1;
  VkQueryPoolCreateInfo create{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
  create.queryType = VK_QUERY_TYPE_TIMESTAMP;
  create.queryCount = kTimestamps;
  check(api_.vkCreateQueryPool(device_, &create, nullptr, &query_pool_), "creating a query pool");
}

void Context::timestamp(VkCommandBuffer cmd, std::uint32_t query) {
  api_.vkCmdResetQueryPool(cmd, query_pool_, query, 1);
  api_.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, query_pool_, query);
}

std::vector<double> Context::timestamps_ms(std::uint32_t count) {
  std::vector<std::uint64_t> ticks(count);
  if (count > 0) {
    check(api_.vkGetQueryPoolResults(device_, query_pool_, 0, count, count * sizeof(std::uint64_t), ticks.data(), sizeof(std::uint64_t),
                                     VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
          "reading timestamps");
  }
  std::vector<double> ms(count);
  for (std::uint32_t i = 0; i < count; ++i) ms[i] = double(ticks[i] & timestamp_mask_) * limits_.timestampPeriod * 1e-6;
  return ms;
}

VkDeviceMemory Context::allocate(const VkMemoryRequirements& requirements, bool host_visible, bool& device_local) {
  const VkMemoryPropertyFlags wanted = host_visible ? (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
                                                    : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  int type = -1;
  for (std::uint32_t t = 0; t < memory_.memoryTypeCount && type < 0; ++t) {
    if ((requirements.memoryTypeBits & (1u << t)) && (memory_.memoryTypes[t].propertyFlags & wanted) == wanted) type = static_cast<int>(t);
  }
  if (type < 0 && !host_visible) {  // no device-local type for buffers: any will do
    for (std::uint32_t t = 0; t < memory_.memoryTypeCount && type < 0; ++t) {
      if (requirements.memoryTypeBits & (1u << t)) type = static_cast<int>(t);
    }
  }
  if (type < 0) throw Error("Vulkan: the device has no host-visible coherent memory for buffers");
  device_local = !host_visible;
  const double bytes = double(requirements.size);
  if (bytes > max_allocation_) throw DeviceMemoryExhausted("Vulkan: a buffer larger than the device's largest allocation");
  if (device_local && allocation_limit_ >= 0 && allocated_ + bytes > allocation_limit_) {
    throw DeviceMemoryExhausted("Vulkan: out of device memory (testing limit)");
  }
  VkMemoryAllocateInfo info{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  info.allocationSize = requirements.size;
  info.memoryTypeIndex = static_cast<std::uint32_t>(type);
  VkDeviceMemory memory = VK_NULL_HANDLE;
  const VkResult result = api_.vkAllocateMemory(device_, &info, nullptr, &memory);
  if (result == VK_ERROR_OUT_OF_DEVICE_MEMORY || (result == VK_ERROR_OUT_OF_HOST_MEMORY && device_local)) {
    throw DeviceMemoryExhausted("Vulkan: out of device memory");
  }
  check(result, "allocating memory");
  if (device_local) allocated_ += bytes;
  return memory;
}

void Context::release(VkDeviceMemory memory, VkDeviceSize bytes, bool device_local) {
  api_.vkFreeMemory(device_, memory, nullptr);
  if (device_local) allocated_ -= double(bytes);
}

void Context::submit(const std::function<void(VkCommandBuffer)>& record) {
  record(begin());
  submit_and_wait();
}

VkCommandBuffer Context::begin() {
  check(api_.vkResetCommandPool(device_, command_pool_, 0), "resetting the command pool");
  check(api_.vkResetDescriptorPool(device_, descriptor_pool_, 0), "resetting the descriptor pool");
  sets_left_ = kSetsPerSubmit;
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(api_.vkBeginCommandBuffer(command_buffer_, &begin), "beginning a command buffer");
  return command_buffer_;
}

void Context::submit_and_wait() {
  barrier(command_buffer_);
  check(api_.vkEndCommandBuffer(command_buffer_), "ending a command buffer");
  VkSubmitInfo submit{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &command_buffer_;
  check(api_.vkQueueSubmit(queue_, 1, &submit, fence_), "submitting work");
  const VkResult waited = api_.vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX);
  api_.vkResetFences(device_, 1, &fence_);
  check(waited, "waiting for the device");
}

void Context::dispatch(VkCommandBuffer cmd, Pipeline pipeline, const std::vector<Window>& windows, const void* push,
                       std::size_t push_bytes, std::uint32_t x, std::uint32_t y, std::uint32_t z) {
  const PipelineObjects& p = this->pipeline(pipeline);
  if (static_cast<int>(windows.size()) != p.bindings) throw Error("Vulkan: internal: wrong number of bindings");
  if (sets_left_ == 0) throw Error("Vulkan: internal: too many dispatches in one submission");
  --sets_left_;
  VkDescriptorSetAllocateInfo allocate{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  allocate.descriptorPool = descriptor_pool_;
  allocate.descriptorSetCount = 1;
  allocate.pSetLayouts = &p.set_layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  check(api_.vkAllocateDescriptorSets(device_, &allocate, &set), "allocating a descriptor set");
  std::vector<VkDescriptorBufferInfo> infos(windows.size());
  std::vector<VkWriteDescriptorSet> writes(windows.size());
  for (std::size_t b = 0; b < windows.size(); ++b) {
    infos[b] = {windows[b].buffer, windows[b].offset, windows[b].range};
    writes[b] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[b].dstSet = set;
    writes[b].dstBinding = static_cast<std::uint32_t>(b);
    writes[b].descriptorCount = 1;
    writes[b].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[b].pBufferInfo = &infos[b];
  }
  api_.vkUpdateDescriptorSets(device_, static_cast<std::uint32_t>(writes.size()), writes.data(), 0, nullptr);
  api_.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  api_.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  api_.vkCmdPushConstants(cmd, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, static_cast<std::uint32_t>(push_bytes), push);
  api_.vkCmdDispatch(cmd, x, y, z);
}

void Context::barrier(VkCommandBuffer cmd) {
  VkMemoryBarrier b{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                    VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
  api_.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_HOST_BIT, 0,
                            1, &b, 0, nullptr, 0, nullptr);
}

void Context::copy(VkCommandBuffer cmd, const Buffer& from, VkDeviceSize from_offset, const Buffer& to, VkDeviceSize to_offset,
                   VkDeviceSize bytes) {
  if (bytes == 0) return;
  const VkBufferCopy region{from_offset, to_offset, bytes};
  api_.vkCmdCopyBuffer(cmd, from.handle(), to.handle(), 1, &region);
}

// ---------------------------------------------------------------------------

}  // namespace opforge::vk::detail

namespace opforge::vk {

const char* to_string(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::discrete: return "discrete GPU";
    case DeviceKind::integrated: return "integrated GPU";
    case DeviceKind::virtual_gpu: return "virtual GPU";
    case DeviceKind::cpu: return "CPU";
    case DeviceKind::other: return "other";
  }
  return "other";
}

std::vector<DeviceInfo> list_devices() {
  using namespace detail;
  Api api = global_api();
  VkInstance instance = make_instance(api, false, nullptr);
  std::vector<Found> found;
  try {
    found = enumerate(api, instance);
  } catch (...) {
    api.vkDestroyInstance(instance, nullptr);
    throw;
  }
  api.vkDestroyInstance(instance, nullptr);
  if (found.empty()) throw Error("Vulkan: no Vulkan 1.1 device with a compute queue found (use --device cpu)");
  std::vector<DeviceInfo> devices;
  for (auto& f : found) devices.push_back(f.info);
  return devices;
}

}  // namespace opforge::vk
