// A model on the Vulkan device against the CPU forward in the same run: the
// time and GFLOP/s of each, how the Vulkan pass ran (whole or in parts, band
// rows, refused allocations), and the differences (raw float32 max-abs;
// 8-bit levels). FRACTION < 1 forces the device budget to that fraction of
// what one pass needs (and then the pass must run in parts); --fp16 stores
// activations as float16 (then the 8-bit outputs may differ by a level).
//
//   vk_forward_bench MODEL IMAGE [FRACTION=1] [--fp16] [PLANE...]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
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
    std::fprintf(stderr, "usage: vk_forward_bench MODEL IMAGE [FRACTION=1] [--fp16] [PLANE...]\n");
    return 2;
  }
  try {
    const model::Model m = model::Model::load(argv[1]);
    const Image image = read_image(argv[2]);
    const double fraction = argc > 3 ? std::atof(argv[3]) : 1.0;
    bool fp16 = false;
    std::vector<float> planes;
    for (int i = 4; i < argc; ++i) {
      if (std::string(argv[i]) == "--fp16") fp16 = true;
      else planes.push_back(static_cast<float>(std::atof(argv[i])));
    }

    vk::VulkanOptions options;
    options.cache_directory = "none";
    options.fp16_storage = fp16;
    const double one_pass = vk::VulkanExecutor(options).resident_bytes(m.spec(), image.rows, image.cols);
    if (fraction < 1) options.budget_bytes = one_pass * fraction;
    vk::VulkanExecutor vulkan(options);
    std::printf("%dx%d, %s on %s%s: one pass needs %.0f MiB of device memory; budget %.0f MiB\n", image.cols, image.rows,
                m.spec().architecture.c_str(), vulkan.device().name.c_str(), fp16 ? " (fp16 storage)" : "", one_pass / (1 << 20),
                vulkan.budget_bytes() / (1 << 20));
    const double gflop = 2.0 * m.spec().macs_per_pixel() * image.rows * image.cols / 1e9;

    auto start = std::chrono::steady_clock::now();
    const Image cpu = model::CpuExecutor().run(m, image, planes);
    const double cpu_seconds = seconds_since(start);
    start = std::chrono::steady_clock::now();
    const Image gpu = vulkan.run(m, image, planes);
    const double gpu_seconds = seconds_since(start);
    const auto& report = vulkan.last_run();
    std::printf("cpu forward %.2f s (%.1f GFLOP/s); vulkan %.2f s (%.1f GFLOP/s), %s, %d-row bands, %d refused allocation(s)\n",
                cpu_seconds, gflop / cpu_seconds, gpu_seconds, gflop / gpu_seconds, report.parts ? "in parts" : "whole",
                report.band_rows, report.retries);

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
    const bool ok = (fraction >= 1 || report.parts) && max_abs <= (fp16 ? 2e-2 : 1e-4) && worst <= 1;
    std::printf("%s\n", ok ? (fraction < 1 ? "PASS: ran in parts and equals the CPU result" : "PASS: equals the CPU result") : "FAIL");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vk_forward_bench: %s\n", e.what());
    return 2;
  }
}
