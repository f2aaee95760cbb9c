// weighted_median at r = 10 on a ~1 MP colour photo against OpenCV contrib's
// cv::ximgproc::weightedMedianFilter (same algorithm family), in one run.
// The peer runs on the 8-bit image: on some float inputs it hangs
// (opencv_contrib issue 1610), and a child process with a time limit guards
// against that anyway.

#include <sys/wait.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <csignal>
#include <opencv2/ximgproc.hpp>

#include "bench_support.hpp"
#include "opforge/operators/weighted_median.hpp"

namespace {

using namespace opforge;

constexpr unsigned kPeerTimeoutSeconds = 120;

const Image& photo() {
  static const Image img = bench::sample_photo();
  return img;
}

void BM_weighted_median_opforge(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(weighted_median(photo(), {.radius = 10, .guide = WmfGuide::self_u8}).data);
  }
}

void BM_weighted_median_opencv_contrib(benchmark::State& state) {
  cv::setNumThreads(static_cast<int>(state.range(0)));
  const cv::Mat u8 = quantize_u8(photo());
  for (auto _ : state) {
    // In a child with an alarm, so a hang cannot stall the benchmark run.
    const pid_t child = fork();
    if (child == 0) {
      alarm(kPeerTimeoutSeconds);
      cv::Mat out;
      cv::ximgproc::weightedMedianFilter(u8, u8, out, 10, 25.5, cv::ximgproc::WMF_EXP);
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status)) state.SkipWithError("OpenCV weightedMedianFilter timed out");
  }
}

BENCHMARK(BM_weighted_median_opforge)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_weighted_median_opencv_contrib)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP), r = 10, sigma 25.5, 8-bit guide\n", photo().cols, photo().rows,
              static_cast<double>(photo().total()) / 1e6);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("OpenCV weightedMedianFilter / opforge, 2 threads", "BM_weighted_median_opencv_contrib/2",
                       "BM_weighted_median_opforge/2");
  benchmark::Shutdown();
  return 0;
}
