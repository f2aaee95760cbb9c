// The sparse-solver smoothers on a ~1 MP colour photo, in one run (peak RSS
// is reported as the rise above the RSS at the start of each benchmark, so the
// numeric factors wls_smooth keeps cached count once, where they are made):
//  - one WLS channel's factorisation and solve: GridCholesky (multifrontal)
//    against its peer, CHOLMOD's supernodal factorisation of the same
//    ordering, at 1 and 2 threads (both refactorise in place, as datagen does),
//    on the photo and on its 500x375 centre (PASCAL VOC's size); and
//    GridCholesky's float factor refined in double (solve_refined), as
//    wls_smooth runs it, against the double factor;
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

// The system wlsFilter builds for the green channel (λ 1, α 1.2) of the
// photo, or of its 500x375 centre (the common PASCAL VOC size Fan et al.'s
// datasets are made of), and its right-hand side, the channel.
struct WlsSystem {
  GridWeights weights;
  std::vector<double> green;
};

WlsSystem make_wls_system(const Image& img) {
  const int rows = img.rows, cols = img.cols;
  std::vector<double> green(static_cast<std::size_t>(rows) * cols), log_g(green.size());
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      green[y * cols + x] = img.at<cv::Vec3f>(y, x)[1];
      log_g[y * cols + x] = std::log(green[y * cols + x] + 0x1.0p-52);
    }
  }
  GridWeights system{rows, cols, std::vector<double>(log_g.size(), 0.0), std::vector<double>(log_g.size(), 0.0)};
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      if (x + 1 < cols) system.horizontal[i] = 1.0 / (std::pow(std::abs(log_g[i + 1] - log_g[i]), 1.2) + 1e-4);
      if (y + 1 < rows) system.vertical[i] = 1.0 / (std::pow(std::abs(log_g[i + cols] - log_g[i]), 1.2) + 1e-4);
    }
  }
  return {std::move(system), std::move(green)};
}

const WlsSystem& wls_system(bool voc_size) {
  static const WlsSystem full = make_wls_system(photo());
  static const WlsSystem voc =
      make_wls_system(photo()(cv::Rect((photo().cols - 500) / 2, (photo().rows - 375) / 2, 500, 375)));
  return voc_size ? voc : full;
}

// Args: threads, VOC size (0/1).
template <class Cholesky>
void BM_channel_solve(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  const GridWeights& w = wls_system(state.range(1) != 0).weights;
  const Cholesky cholesky(w.rows, w.cols);
  const std::vector<double>& b = wls_system(state.range(1) != 0).green;
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  cholesky.solve(w, {}, {&bp, 1}, {&xp, 1});  // the numeric factor's first touch
  for (auto _ : state) cholesky.solve(w, {}, {&bp, 1}, {&xp, 1});
  state.counters["factor_nonzeros_M"] = cholesky.factor_nonzeros() / 1e6;
}

// GridCholesky::solve_refined (float factor, refined in double to an RMS
// residual of 1e-6), as wls_smooth runs it; its PSNR against the double
// solve (peak 1). Args: threads, VOC size (0/1).
void BM_channel_solve_refined(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  const auto& [w, b] = wls_system(state.range(1) != 0);
  const GridCholesky cholesky(w.rows, w.cols);
  std::vector<double> x(b.size()), exact(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  double* ep = exact.data();
  cholesky.solve(w, {}, {&bp, 1}, {&ep, 1});
  cholesky.solve_refined(w, {}, {&bp, 1}, {&xp, 1});
  RefinedSolveReport report;
  for (auto _ : state) report = cholesky.solve_refined(w, {}, {&bp, 1}, {&xp, 1});
  double squares = 0;
  for (std::size_t i = 0; i < b.size(); ++i) squares += (x[i] - exact[i]) * (x[i] - exact[i]);
  state.counters["refinements"] = report.refinements;
  state.counters["psnr_vs_double_dB"] = 10 * std::log10(static_cast<double>(b.size()) / squares);
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
BENCHMARK(BM_channel_solve<GridCholesky>)->Name("BM_channel_solve_multifrontal")->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_channel_solve<CholmodGridCholesky>)->Name("BM_channel_solve_cholmod")->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_channel_solve_refined)->ArgsProduct({{1, 2}, {0, 1}})
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
  reporter.print_ratio("CHOLMOD / multifrontal, one WLS channel, 1 thread", "BM_channel_solve_cholmod/1/0",
                       "BM_channel_solve_multifrontal/1/0");
  reporter.print_ratio("CHOLMOD / multifrontal, one WLS channel, 2 threads", "BM_channel_solve_cholmod/2/0",
                       "BM_channel_solve_multifrontal/2/0");
  reporter.print_ratio("CHOLMOD / multifrontal, one 500x375 WLS channel, 1 thread", "BM_channel_solve_cholmod/1/1",
                       "BM_channel_solve_multifrontal/1/1");
  for (const char* args : {"1/0", "2/0", "1/1", "2/1"}) {
    reporter.print_ratio(std::string("double / refined float factor, one WLS channel, threads/VOC ") + args,
                         std::string("BM_channel_solve_multifrontal/") + args, std::string("BM_channel_solve_refined/") + args);
  }
  reporter.print_ratio("Eigen SimplicialLDLT / GridCholesky wls_smooth, 1 thread", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth/1");
  reporter.print_ratio("Eigen SimplicialLDLT / GridCholesky wls_smooth, 2 threads", "BM_wls_smooth_eigen/",
                       "BM_wls_smooth/2");
  reporter.print_ratio("rtv_smooth direct / pcg", "BM_rtv_smooth/1", "BM_rtv_smooth/0");
  benchmark::Shutdown();
  return 0;
}
