// The sparse-solver smoothers on a ~1 MP colour photo, in one run (peak RSS
// is reported as the rise above the RSS at the start of each benchmark, so the
// numeric factors wls_smooth keeps cached count once, where they are made):
//  - wls_smooth (CHOLMOD supernodal, channels in parallel) against the plain
//    path, Eigen's SimplicialLDLT channel by channel; peak RSS of each;
//  - the one-off symbolic analysis that wls_smooth caches per image size;
//  - rtv_smooth with both solvers: time, PCG iterations, peak RSS.

#include <tbb/global_control.h>

#include <algorithm>
#include <numeric>

#include "bench_support.hpp"
#include "opforge/operators/grid_solver.hpp"
#include "opforge/operators/rtv_smooth.hpp"
#include "opforge/operators/wls_smooth.hpp"

namespace {

using namespace opforge;

const Image& photo() {
  static const Image img = bench::sample_photo();
  return img;
}

void BM_wls_smooth_cholmod(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  wls_smooth(photo(), {});  // analysis happens once per size; time the steady state
  const bench::PeakRssProbe rss;
  for (auto _ : state) benchmark::DoNotOptimize(wls_smooth(photo(), {}));
  state.counters["peak_rss_rise_MiB"] = rss.rise_mib();
}

void BM_wls_smooth_eigen(benchmark::State& state) {
  const bench::PeakRssProbe rss;
  for (auto _ : state) benchmark::DoNotOptimize(reference::wls_smooth(photo(), {}));
  state.counters["peak_rss_rise_MiB"] = rss.rise_mib();
}

void BM_grid_cholesky_analysis(benchmark::State& state) {
  for (auto _ : state) {
    GridCholesky analysis(photo().rows, photo().cols);
    state.counters["factor_nonzeros_M"] = analysis.factor_nonzeros() / 1e6;
  }
}

void BM_rtv_smooth(benchmark::State& state) {
  const auto solver = state.range(0) == 0 ? RtvSolver::pcg : RtvSolver::direct;
  rtv_smooth(photo(), {.solver = solver});  // warm the analysis cache (direct)
  const bench::PeakRssProbe rss;
  RtvReport report;
  for (auto _ : state) {
    report = {};
    benchmark::DoNotOptimize(rtv_smooth(photo(), {.solver = solver}, &report));
  }
  state.counters["peak_rss_rise_MiB"] = rss.rise_mib();
  if (!report.pcg_iterations.empty()) {
    const auto& it = report.pcg_iterations;
    state.counters["pcg_iters_total"] = std::accumulate(it.begin(), it.end(), 0);
    state.counters["pcg_iters_max"] = *std::max_element(it.begin(), it.end());
  }
  state.SetLabel(solver == RtvSolver::pcg ? "pcg" : "direct");
}

BENCHMARK(BM_grid_cholesky_analysis)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_wls_smooth_cholmod)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_wls_smooth_eigen)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_rtv_smooth)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP), default parameters\n", photo().cols, photo().rows, photo().total() / 1e6);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("Eigen SimplicialLDLT / CHOLMOD wls_smooth, 1 thread", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth_cholmod/1");
  reporter.print_ratio("Eigen SimplicialLDLT / CHOLMOD wls_smooth, 2 threads", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth_cholmod/2");
  reporter.print_ratio("rtv_smooth direct / pcg", "BM_rtv_smooth/1", "BM_rtv_smooth/0");
  benchmark::Shutdown();
  return 0;
}
