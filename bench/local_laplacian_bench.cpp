// local_laplacian on a ~1 MP colour photo: time per variant (detail N = 10,
// toy and paris N = 20) at 1 and 2 threads. There is no peer in OpenCV.

#include <tbb/global_control.h>

#include "bench_support.hpp"
#include "opforge/operators/local_laplacian.hpp"

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

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("detail: 1 thread / 2 threads", "BM_local_laplacian/0/1", "BM_local_laplacian/0/2");
  benchmark::Shutdown();
  return 0;
}
