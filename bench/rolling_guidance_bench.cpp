// rolling_guidance on a ~1 MP colour photo against OpenCV contrib's
// cv::ximgproc::rollingGuidanceFilter with the same settings (σs 3, σr 0.05,
// 4 iterations), in one run. (OpenCV's filter is not the paper's algorithm —
// it starts from the source — but it is the peer users reach for.)

#include <tbb/global_control.h>

#include <opencv2/core.hpp>
#include <opencv2/ximgproc.hpp>

#include "bench_support.hpp"
#include "opforge/operators/rolling_guidance.hpp"

namespace {

using namespace opforge;

const Image& photo() {
  static const Image img = bench::sample_photo();
  return img;
}

void BM_rolling_guidance_opforge(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(rolling_guidance(photo(), {.sigma_s = 3.0, .sigma_r = 0.05}).data);
}

void BM_rolling_guidance_opencv_contrib(benchmark::State& state) {
  cv::setNumThreads(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    cv::Mat out;
    cv::ximgproc::rollingGuidanceFilter(photo(), out, -1, 0.05, 3.0, 4);
    benchmark::DoNotOptimize(out.data);
  }
}

BENCHMARK(BM_rolling_guidance_opforge)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 5); });
BENCHMARK(BM_rolling_guidance_opencv_contrib)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP), sigma_s 3, sigma_r 0.05, 4 iterations\n", photo().cols, photo().rows,
              static_cast<double>(photo().total()) / 1e6);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("OpenCV rollingGuidanceFilter / opforge, 2 threads", "BM_rolling_guidance_opencv_contrib/2",
                       "BM_rolling_guidance_opforge/2");
  reporter.print_ratio("opforge 1 thread / 2 threads", "BM_rolling_guidance_opforge/1", "BM_rolling_guidance_opforge/2");
  benchmark::Shutdown();
  return 0;
}
