#include "vulkan_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "opforge/core/error.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"

namespace opforge::vk {

std::string loader_name() {
  const char* name = std::getenv("OPFORGE_VULKAN_LOADER");
  return name != nullptr && *name != '\0' ? name : "libvulkan.so.1";
}

namespace detail {

Api& global_api() {
  static Api api;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string name = loader_name();
    void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      failure = "Vulkan is not available: the loader " + name +
                " cannot be opened (install libvulkan1 and a driver, or use --device cpu)";
      return;
    }
    api.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(library, "vkGetInstanceProcAddr"));
    if (api.vkGetInstanceProcAddr == nullptr) {
      failure = "Vulkan is not available: " + name + " has no vkGetInstanceProcAddr";
      return;
    }
#define OPFORGE_VK_LOAD_GLOBAL(name) \
  api.name = reinterpret_cast<PFN_##name>(api.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name));
    OPFORGE_VK_GLOBAL_FUNCTIONS(OPFORGE_VK_LOAD_GLOBAL)
#undef OPFORGE_VK_LOAD_GLOBAL
    if (api.vkCreateInstance == nullptr) failure = "Vulkan is not available: " + name + " has no vkCreateInstance";
  });
  if (!failure.empty()) throw Error(failure);
  return api;
}

void load_instance_functions(Api& api, VkInstance instance) {
#define OPFORGE_VK_LOAD_INSTANCE(name)                                                      \
  api.name = reinterpret_cast<PFN_##name>(api.vkGetInstanceProcAddr(instance, #name));    \
  if (api.name == nullptr) throw Error("Vulkan: the loader lacks " #name " (Vulkan 1.1 is needed)");
  OPFORGE_VK_INSTANCE_FUNCTIONS(OPFORGE_VK_LOAD_INSTANCE)
#undef OPFORGE_VK_LOAD_INSTANCE
  api.vkCreateDebugUtilsMessengerEXT = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
      api.vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
  api.vkDestroyDebugUtilsMessengerEXT = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
      api.vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
}

void load_device_functions(Api& api, VkDevice device) {
#define OPFORGE_VK_LOAD_DEVICE(name)                                               \
  api.name = reinterpret_cast<PFN_##name>(api.vkGetDeviceProcAddr(device, #name)); \
  if (api.name == nullptr) throw Error("Vulkan: the driver lacks " #name);
  OPFORGE_VK_DEVICE_FUNCTIONS(OPFORGE_VK_LOAD_DEVICE)
#undef OPFORGE_VK_LOAD_DEVICE
}

std::string result_name(VkResult result) {
  switch (result) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult " + std::to_string(static_cast<int>(result));
  }
}

void check(VkResult result, const char* what) {
  if (result != VK_SUCCESS) throw Error(std::string("Vulkan: ") + what + " failed: " + result_name(result));
}

}  // namespace detail
}  // namespace opforge::vk
