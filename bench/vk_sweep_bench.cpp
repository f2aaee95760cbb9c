// Fan et al.'s cheap-tuning network at several parameter values of one
// image on the Vulkan device: each value as its own pass (run) against
// VulkanExecutor::run_planes, which runs the layers before the adjustable
// one once; the same outputs, measured in the same run.
//
//   vk_sweep_bench [ROWS=180] [COLS=240] [VALUES=4] [WIDTH=64]

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "opforge/learner/network.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"

using namespace opforge;

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 180, cols = argc > 2 ? std::atoi(argv[2]) : 240;
  const int values = argc > 3 ? std::atoi(argv[3]) : 4, width = argc > 4 ? std::atoi(argv[4]) : 64;
  try {
    model::InputPlane lambda;
    lambda.name = lambda.param = "lambda";
    lambda.param_lo = 0.002;
    lambda.param_hi = 0.2;
    const model::Model initial = learner::uniform_initialised(learner::fan_spec("fan_cheap_tuning", {lambda}, width), 1);
    std::vector<model::LayerWeights> weights = initial.weights();
    for (auto& w : weights) {
      for (std::size_t j = 0; j < w.gamma_from_params.size(); ++j) w.gamma_from_params[j] = 0.5f * std::sin(float(j));
    }
    const model::Model m(initial.spec(), weights, "fan_cheap_tuning");
    Image input(rows, cols, CV_32FC3);
    cv::RNG(1).fill(input, cv::RNG::UNIFORM, 0.0, 1.0);
    std::vector<std::vector<float>> sets;
    for (int v = 0; v < values; ++v) sets.push_back({0.002f + 0.198f * float(v) / float(std::max(1, values - 1))});
    vk::VulkanOptions options;
    options.cache_directory = "none";
    vk::VulkanExecutor executor(options);
    auto start = std::chrono::steady_clock::now();
    std::vector<Image> each;
    for (const auto& s : sets) each.push_back(executor.run(m, input, s));
    const double separate = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    start = std::chrono::steady_clock::now();
    const std::vector<Image> swept = executor.run_planes(m, input, sets);
    const double sweep = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double worst = 0;
    for (std::size_t s = 0; s < sets.size(); ++s) worst = std::max(worst, cv::norm(each[s], swept[s], cv::NORM_INF));
    std::printf("%dx%d, Fan cheap tuning at width %d, %d values on %s: rerun from layer %zu of %zu\n", cols, rows, width, values,
                executor.device().name.c_str(), vk::VulkanExecutor::rerun_from(m.spec()), m.spec().layers.size());
    std::printf("separate passes %.2f s, run_planes %.2f s: %.2fx; max-abs between them %.3g\n", separate, sweep, separate / sweep, worst);
    return worst <= 1e-6 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vk_sweep_bench: %s\n", e.what());
    return 2;
  }
}
