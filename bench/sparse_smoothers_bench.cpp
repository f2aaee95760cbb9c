// The sparse-solver smoothers on a ~1 MP colour photo, in one run (peak RSS
// is reported as the rise above the RSS at the start of each benchmark, so the
// numeric factors wls_smooth keeps cached count once, where they are made):
//  - one WLS channel's factorisation and solve: GridCholesky (multifrontal)
//    against its peer, CHOLMOD's supernodal factorisation of the same
//    ordering, at 1 and 2 threads (both refactorise in place, as datagen does);
//  - wls_smooth (GridCholesky, channel by channel) against the plain path,
//    Eigen's SimplicialLDLT channel by channel; peak RSS of each;
//  - the one-off analysis that wls_smooth caches per image size;
//  - rtv_smooth with both solvers: time, PCG iterations, peak RSS.

#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
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

// The system wlsFilter builds for the photo's green channel (λ 1, α 1.2).
const GridWeights& wls_system() {
  static const GridWeights w = [] {
    const Image& img = photo();
    const int rows = img.rows, cols = img.cols;
    std::vector<double> log_g(static_cast<std::size_t>(rows) * cols);
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) log_g[y * cols + x] = std::log(img.at<cv::Vec3f>(y, x)[1] + 0x1.0p-52);
    }
    GridWeights system{rows, cols, std::vector<double>(log_g.size(), 0.0), std::vector<double>(log_g.size(), 0.0)};
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) {
        const std::size_t i = static_cast<std::size_t>(y) * cols + x;
        if (x + 1 < cols) system.horizontal[i] = 1.0 / (std::pow(std::abs(log_g[i + 1] - log_g[i]), 1.2) + 1e-4);
        if (y + 1 < rows) system.vertical[i] = 1.0 / (std::pow(std::abs(log_g[i + cols] - log_g[i]), 1.2) + 1e-4);
      }
    }
    return w;
  }();
  return w;
}

template <class Cholesky>
void BM_channel_solve(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  const GridWeights& w = wls_system();
  const Cholesky cholesky(w.rows, w.cols);
  std::vector<double> b(static_cast<std::size_t>(w.rows) * w.cols, 0.5), x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  cholesky.solve(w, {}, {&bp, 1}, {&xp, 1});  // the numeric factor's first touch
  for (auto _ : state) cholesky.solve(w, {}, {&bp, 1}, {&xp, 1});
  state.counters["factor_nonzeros_M"] = cholesky.factor_nonzeros() / 1e6;
}

void BM_wls_smooth(benchmark::State& state) {
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
BENCHMARK(BM_channel_solve<GridCholesky>)->Name("BM_channel_solve_multifrontal")->Arg(1)->Arg(2)
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_channel_solve<CholmodGridCholesky>)->Name("BM_channel_solve_cholmod")->Arg(1)->Arg(2)
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_wls_smooth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_wls_smooth_eigen)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_rtv_smooth)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP), default parameters\n", photo().cols, photo().rows, static_cast<double>(photo().total()) / 1e6);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("CHOLMOD / multifrontal, one WLS channel, 1 thread", "BM_channel_solve_cholmod/1",
                       "BM_channel_solve_multifrontal/1");
  reporter.print_ratio("CHOLMOD / multifrontal, one WLS channel, 2 threads", "BM_channel_solve_cholmod/2",
                       "BM_channel_solve_multifrontal/2");
  reporter.print_ratio("Eigen SimplicialLDLT / GridCholesky wls_smooth, 1 thread", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth/1");
  reporter.print_ratio("Eigen SimplicialLDLT / GridCholesky wls_smooth, 2 threads", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth/2");
  reporter.print_ratio("rtv_smooth direct / pcg", "BM_rtv_smooth/1", "BM_rtv_smooth/0");
  benchmark::Shutdown();
  return 0;
}
