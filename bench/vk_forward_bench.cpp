// A model on the Vulkan device against the CPU forward in the same run: the
// time and GFLOP/s of each, how the Vulkan pass ran (whole or in parts, band
// rows, refused allocations), and the differences (raw float32 max-abs;
// 8-bit levels). FRACTION < 1 forces the device budget to that fraction of
// what one pass needs (and then the pass must run in parts); --fp16 stores
// activations as float16 (then the 8-bit outputs may differ by a level).
// --repeat N times N more Vulkan runs after the first (which includes
// creating the pipelines and uploading the weights) and reports the fastest
// and the median: the per-frame time of a video or a directory.
// --pixels N sets the conv shader's pixels per invocation (1..4; the
// device's choice when absent), --channels-per-load 1|4 how many input
// channels the conv shader reads per load (the device's choice when absent),
// --device-index N the device. --profile
// prints each layer's time on the device (timestamps) in the last run.
// --resize WxH scales the image first (bicubic), e.g. a 4K frame from a
// 1080p one. --write-input IN.npy and --write-output OUT.npy write the network's input
// and the CPU forward's raw output (H×W×C float32), for a peer
// (bench/can_torch.py) to run and compare.
//
//   vk_forward_bench MODEL IMAGE [FRACTION=1] [--fp16] [--repeat N] [--pixels N] [--device-index N]
//                    [--profile] [--channels-per-load 1|4] [--resize WxH] [--write-input IN.npy] [--write-output OUT.npy] [PLANE...]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "opforge/core/error.hpp"
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
    std::fprintf(stderr, "usage: vk_forward_bench MODEL IMAGE [FRACTION=1] [--fp16] [--repeat N] [--pixels N] [--device-index N] "
                         "[--profile] [--channels-per-load 1|4] [--resize WxH] [--write-input IN.npy] [--write-output OUT.npy] [PLANE...]\n");
    return 2;
  }
  try {
    const model::Model m = model::Model::load(argv[1]);
    Image image = read_image(argv[2]);
    const double fraction = argc > 3 ? std::atof(argv[3]) : 1.0;
    bool fp16 = false;
    int repeat = 0;
    std::string write_input, write_output;
    std::vector<float> planes;
    vk::VulkanOptions options;
    for (int i = 4; i < argc; ++i) {
      const std::string arg = argv[i];
      const bool has_value = i + 1 < argc;
      if (arg == "--fp16") fp16 = true;
      else if (arg == "--profile") options.profile = true;
      else if (arg == "--channels-per-load" && has_value) options.conv_vector_loads = std::atoi(argv[++i]) == 4;
      else if (arg == "--repeat" && has_value) repeat = std::atoi(argv[++i]);
      else if (arg == "--pixels" && has_value) options.conv_pixels = std::atoi(argv[++i]);
      else if (arg == "--device-index" && has_value) options.device_index = std::atoi(argv[++i]);
      else if (arg == "--resize" && has_value) {
        int w = 0, h = 0;
        if (std::sscanf(argv[++i], "%dx%d", &w, &h) != 2 || w < 1 || h < 1) throw Error(std::string("--resize takes WxH, got ") + argv[i]);
        cv::Mat scaled;
        cv::resize(image, scaled, cv::Size(w, h), 0, 0, cv::INTER_CUBIC);
        image = scaled;
      } else if (arg == "--write-input" && has_value) write_input = argv[++i];
      else if (arg == "--write-output" && has_value) write_output = argv[++i];
      else if (arg.rfind("--", 0) == 0) throw Error("unknown or incomplete option " + arg);
      else planes.push_back(static_cast<float>(std::atof(argv[i])));
    }

    options.cache_directory = "none";
    options.fp16_storage = fp16;
    // The peer's input and reference first: they need no Vulkan device.
    if (!write_input.empty() || !write_output.empty()) {
      const cv::Mat input = model::network_input(m, image, planes);
      if (!write_input.empty()) write_file_atomic(write_input, encode_npy(input));
      if (!write_output.empty()) write_file_atomic(write_output, encode_npy(model::CpuExecutor().forward(m, input)));
    }
    for (const auto& d : vk::list_devices()) {
      std::printf("device %d: %s (%s, %s, Vulkan %s, %.1f GiB, subgroup %d)\n", d.index, d.name.c_str(), vk::to_string(d.kind),
                  d.driver.c_str(), d.vulkan_version.c_str(), d.memory_bytes / (1 << 30), d.subgroup_size);
      if (!d.cooperative_matrix.empty()) std::printf("  cooperative matrices: %s\n", d.cooperative_matrix.c_str());
    }

    const double one_pass = vk::VulkanExecutor(options).resident_bytes(m.spec(), image.rows, image.cols);
    if (fraction < 1) options.budget_bytes = one_pass * fraction;
    vk::VulkanExecutor vulkan(options);
    std::printf("%dx%d, %s on %s%s, conv: %d pixel(s) per invocation, %d input channel(s) per load: one pass needs %.0f MiB "
                "of device memory; budget %.0f MiB\n",
                image.cols, image.rows, m.spec().architecture.c_str(), vulkan.device().name.c_str(), fp16 ? " (fp16 storage)" : "",
                vulkan.device().conv_pixels, vulkan.device().conv_vector_loads ? 4 : 1, one_pass / (1 << 20), vulkan.budget_bytes() / (1 << 20));
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
    if (repeat > 0) {
      std::vector<double> times;
      for (int r = 0; r < repeat; ++r) {
        start = std::chrono::steady_clock::now();
        const Image again = vulkan.run(m, image, planes);
        times.push_back(seconds_since(start));
        if (cv::norm(again, gpu, cv::NORM_INF) != 0) {
          std::printf("FAIL: run %d differs from the first\n", r + 2);
          return 1;
        }
      }
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      std::printf("vulkan per frame over %d more runs: fastest %.2f ms (%.1f GFLOP/s), median %.2f ms (%.1f GFLOP/s); "
                  "every run equal to the first\n",
                  repeat, 1e3 * times.front(), gflop / times.front(), 1e3 * median, gflop / median);
    }

    if (!vulkan.last_run().layers.empty()) {
      const auto& last = vulkan.last_run();
      std::printf("device time per layer, last run (ms): conv+stats | epilogue | waiting for the host\n");
      double conv = 0, epilogue = 0, host = 0;
      for (const auto& l : last.layers) {
        std::printf("  %-12s %8.3f %8.3f %8.3f\n", l.name.c_str(), l.conv_ms, l.epilogue_ms, l.host_ms);
        conv += l.conv_ms, epilogue += l.epilogue_ms, host += l.host_ms;
      }
      std::printf("  %-12s %8.3f %8.3f %8.3f   of %.3f ms on the device's clock (the rest: upload, download)\n", "total", conv,
                  epilogue, host, last.device_ms);
    }
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
