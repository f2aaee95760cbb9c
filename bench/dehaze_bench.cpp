// Dehazing on a ~1 MP colour photo, in one run:
//  - the haze-line assignment of dehaze_nonlocal (nearest of 1000 directions
//    for every pixel): the certified grid against brute force over all 1000;
//  - dehaze_dark_channel and dehaze_nonlocal end to end.

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <cmath>

#include "bench_support.hpp"
#include "opforge/operators/dehaze.hpp"

namespace {

using namespace opforge;

const Image& photo() {
  static const Image img = bench::sample_photo();
  return img;
}

// Unit directions from the air-light for every pixel, as dehaze_nonlocal forms them.
const std::vector<Direction>& pixel_directions() {
  static const std::vector<Direction> u = [] {
    const std::vector<Plane> rgb = to_double_planes(photo());
    const auto a = estimate_airlight(rgb, photo().rows, photo().cols, 15, 0.001);
    std::vector<Direction> out(rgb[0].size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      const Direction d{rgb[0][i] - a[0], rgb[1][i] - a[1], rgb[2][i] - a[2]};
      const double r = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
      out[i] = {d[0] / r, d[1] / r, d[2] / r};
    }
    return out;
  }();
  return u;
}

void BM_haze_lines(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
  const bool brute = state.range(0) == 1;
  const NearestDirection lines(default_haze_line_directions());
  const auto& u = pixel_directions();
  std::vector<int> line(u.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < u.size(); ++i) line[i] = brute ? lines.nearest_brute_force(u[i]) : lines.nearest(u[i]);
    benchmark::DoNotOptimize(line.data());
  }
  state.SetLabel(brute ? "brute force, 1 thread" : "certified grid, 1 thread");
}

void BM_dehaze(benchmark::State& state) {
  const bool nonlocal = state.range(0) == 1;
  if (nonlocal) dehaze_nonlocal(photo());  // analyse the grid solver once per size
  for (auto _ : state) {
    if (nonlocal) {
      benchmark::DoNotOptimize(dehaze_nonlocal(photo()).radiance.data);
    } else {
      benchmark::DoNotOptimize(dehaze_dark_channel(photo()).radiance.data);
    }
  }
  state.SetLabel(nonlocal ? "dehaze_nonlocal" : "dehaze_dark_channel");
}

BENCHMARK(BM_haze_lines)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_dehaze)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP)\n", photo().cols, photo().rows, static_cast<double>(photo().total()) / 1e6);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("haze lines: brute force / certified grid", "BM_haze_lines/1", "BM_haze_lines/0");
  benchmark::Shutdown();
  return 0;
}
