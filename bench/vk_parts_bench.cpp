// A large image on the Vulkan device with its memory budget forced below
// what one pass needs, against the CPU forward in the same run: the time of
// each, how the Vulkan pass ran (parts, band rows, refused allocations),
// and the differences (raw float32 max-abs; 8-bit levels).
//
//   vk_parts_bench MODEL IMAGE [FRACTION=0.25] [PLANE...]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "opforge/core/io.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"

using namespace opforge;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: vk_parts_bench MODEL IMAGE [FRACTION=0.25] [PLANE...]\n");
    return 2;
  }
  try {
    const model::Model m = model::Model::load(argv[1]);
    const Image image = read_image(argv[2]);
    const double fraction = argc > 3 ? std::atof(argv[3]) : 0.25;
    std::vector<float> planes;
    for (int i = 4; i < argc; ++i) planes.push_back(static_cast<float>(std::atof(argv[i])));

    vk::VulkanOptions probe_options;
    probe_options.cache_directory = "none";
    const double one_pass = vk::VulkanExecutor(probe_options).resident_bytes(m.spec(), image.rows, image.cols);
    vk::VulkanOptions options = probe_options;
    options.budget_bytes = one_pass * fraction;
    vk::VulkanExecutor vulkan(options);
    std::printf("%dx%d, %s on %s: one pass needs %.0f MiB of device memory; budget %.0f MiB (%.2f of it)\n", image.cols,
                image.rows, m.spec().architecture.c_str(), vulkan.device().name.c_str(), one_pass / (1 << 20),
                *options.budget_bytes / (1 << 20), fraction);

    auto start = std::chrono::steady_clock::now();
    const Image cpu = model::CpuExecutor().run(m, image, planes);
    const double cpu_seconds = seconds_since(start);
    start = std::chrono::steady_clock::now();
    const Image gpu = vulkan.run(m, image, planes);
    const double gpu_seconds = seconds_since(start);
    const auto& report = vulkan.last_run();
    std::printf("cpu forward %.1f s; vulkan %.1f s, %s, %d-row bands, %d refused allocation(s)\n", cpu_seconds, gpu_seconds,
                report.parts ? "in parts" : "whole", report.band_rows, report.retries);

    const double max_abs = cv::norm(cpu, gpu, cv::NORM_INF);
    const Image a = model::quantise(m, cpu), b = model::quantise(m, gpu);
    const std::size_t n = a.total() * a.channels();
    std::size_t equal = 0;
    long worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const long d = std::labs(std::lround(a.ptr<float>()[i] * 255) - std::lround(b.ptr<float>()[i] * 255));
      worst = std::max(worst, d);
      equal += d == 0;
    }
    std::printf("raw max-abs %.3g; 8-bit: %.4f%% of values equal, worst %ld level(s)\n", max_abs, 100.0 * double(equal) / double(n), worst);
    const bool ok = report.parts && max_abs <= 1e-4 && worst <= 1;
    std::printf("%s\n", ok ? "PASS: ran in parts and equals the CPU result" : "FAIL");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vk_parts_bench: %s\n", e.what());
    return 2;
  }
}
