// local_laplacian on a ~1 MP colour photo: time per variant (detail N = 10,
// toy and paris N = 20) at 1 and 2 threads, and the photographic style
// transfer built on it (N = 20, 3 iterations, Fan et al.'s call) with a 256²
// model. There is no peer in OpenCV.

#include <tbb/global_control.h>

#include "bench_support.hpp"
#include "opforge/operators/local_laplacian.hpp"
#include "opforge/operators/style_transfer.hpp"

namespace {

using namespace opforge;

void BM_local_laplacian(benchmark::State& state) {
  static const Image photo = bench::sample_photo();
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(1));
  const auto remap = static_cast<LlfRemap>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(local_laplacian(photo, {.remap = remap}).data);
  state.SetLabel(remap == LlfRemap::detail ? "detail (N=10)" : remap == LlfRemap::toy ? "toy (N=20)" : "paris (N=20)");
}

BENCHMARK(BM_local_laplacian)
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

void BM_style_transfer(benchmark::State& state) {
  static const Image photo = bench::sample_photo();
  static const Image model = read_image(std::string(OPFORGE_BENCH_DATA_DIR) + "/conformance/inputs/carving256.png");
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(style_transfer(photo, model).data);
}

BENCHMARK(BM_style_transfer)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("detail: 1 thread / 2 threads", "BM_local_laplacian/0/1", "BM_local_laplacian/0/2");
  reporter.print_ratio("style_transfer: 1 thread / 2 threads", "BM_style_transfer/1", "BM_style_transfer/2");
  benchmark::Shutdown();
  return 0;
}
