// l0_smooth on a ~1 MP colour photo, in one run:
//  - opforge's l0_smooth at 1 and 2 threads;
//  - the FFT floor: the same forward/inverse transforms the algorithm needs
//    (3 forward + 2 per channel per iteration), with no other work, in float
//    (the operator's precision) and in double;
//  - OpenCV contrib's cv::ximgproc::l0Smooth, same λ and κ (the peer; it is
//    not the authors' algorithm to the bit, but it solves the same problem).
// Prints opforge / floor and OpenCV / opforge ratios at the end.

#include <tbb/global_control.h>

#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/ximgproc.hpp>

#include "bench_support.hpp"
#include "opforge/operators/fft.hpp"
#include "opforge/operators/l0_smooth.hpp"

namespace {

using namespace opforge;

constexpr double kLambda = 0.02, kKappa = 2.0;

const Image& photo() {
  static const Image img = bench::sample_photo();
  return img;
}

void BM_l0_smooth_opforge(benchmark::State& state) {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(l0_smooth(photo(), {.lambda = kLambda, .kappa = kKappa}));
  state.counters["megapixels"] = static_cast<double>(photo().total()) / 1e6;
}

// The transforms alone, in the precision the operator uses (float) and in
// double (the floor before the operator moved to float).
template <typename Real>
void BM_l0_smooth_fft_floor(benchmark::State& state) {
  using Fft = BasicRealFft2d<Real>;
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, state.range(0));
  const int rows = photo().rows, cols = photo().cols, channels = photo().channels();
  int iterations = 0;
  for (double beta = 2 * kLambda; beta < 1e5; beta *= kKappa) ++iterations;
  std::vector<std::vector<Real>> planes(channels, std::vector<Real>(static_cast<std::size_t>(rows) * cols, Real(0.5)));
  std::vector<Real*> ptr(channels);
  for (int c = 0; c < channels; ++c) ptr[c] = planes[c].data();
  const auto copy_rows = [&](int y, Real* const* row) {
    for (int c = 0; c < channels; ++c) std::memcpy(row[c], ptr[c] + static_cast<std::size_t>(y) * cols, sizeof(Real) * cols);
  };
  for (auto _ : state) {
    Fft fft(rows, cols, channels);
    std::vector<std::vector<typename Fft::Complex>> spectra(channels,
                                                            std::vector<typename Fft::Complex>(fft.spectrum_size()));
    std::vector<typename Fft::Complex*> spectra_ptr(channels);
    for (int c = 0; c < channels; ++c) spectra_ptr[c] = spectra[c].data();
    fft.forward(const_cast<const Real* const*>(ptr.data()), cols, spectra_ptr.data());
    for (int i = 0; i < iterations; ++i) {
      fft.filter(copy_rows, ptr.data(), cols, Real(1), [](int, int, int, typename Fft::Complex*) {});
    }
    benchmark::DoNotOptimize(ptr.data());
  }
  state.counters["transforms_2d"] = channels * (1 + 2 * iterations);
}

void BM_l0_smooth_opencv_contrib(benchmark::State& state) {
  cv::setNumThreads(static_cast<int>(state.range(0)));
  cv::Mat bgr;
  cv::cvtColor(photo(), bgr, cv::COLOR_RGB2BGR);
  bgr.convertTo(bgr, CV_8U, 255.0);
  for (auto _ : state) {
    cv::Mat out;
    cv::ximgproc::l0Smooth(bgr, out, kLambda, kKappa);
    benchmark::DoNotOptimize(out.data);
  }
}

BENCHMARK(BM_l0_smooth_opforge)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 7); });
BENCHMARK(BM_l0_smooth_fft_floor<float>)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 7); });
BENCHMARK(BM_l0_smooth_fft_floor<double>)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 3); });
BENCHMARK(BM_l0_smooth_opencv_contrib)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime()
    ->Apply([](auto* b) { bench::repeated(b, 2); });

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("image: %dx%d RGB (%.2f MP), lambda %.3g, kappa %.3g\n", photo().cols, photo().rows,
              static_cast<double>(photo().total()) / 1e6, kLambda, kKappa);
  bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (same run):\n");
  reporter.print_ratio("OpenCV l0Smooth / opforge l0_smooth, 2 threads", "BM_l0_smooth_opencv_contrib/2",
                       "BM_l0_smooth_opforge/2");
  reporter.print_ratio("opforge l0_smooth / float FFT floor, 1 thread", "BM_l0_smooth_opforge/1",
                       "BM_l0_smooth_fft_floor<float>/1");
  reporter.print_ratio("opforge l0_smooth / float FFT floor, 2 threads", "BM_l0_smooth_opforge/2",
                       "BM_l0_smooth_fft_floor<float>/2");
  reporter.print_ratio("double FFT floor / float FFT floor, 2 threads", "BM_l0_smooth_fft_floor<double>/2",
                       "BM_l0_smooth_fft_floor<float>/2");
  reporter.print_ratio("opforge l0_smooth 1 thread / 2 threads", "BM_l0_smooth_opforge/1",
                       "BM_l0_smooth_opforge/2");
  benchmark::Shutdown();
  return 0;
}
