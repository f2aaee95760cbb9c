// RTV structure extraction (Xu et al. 2012), OPERATORS.md §3.

#include "opforge/operators/rtv_smooth.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"
#include "opforge/operators/grid_solver.hpp"

namespace opforge {
namespace {

constexpr double kGradientFloor = 1e-3;  // the authors' vareps
constexpr double kPcgTolerance = 0.1;    // pcg(A, b, 0.1, 100, L, L')
constexpr int kPcgMaxIterations = 100;
constexpr double kMatlabEps = 0x1.0p-52;

using Table = ParamTable<RtvSmoothParams>;
const Table& params_table() {
  static const Table table{
      "rtv_smooth",
      {
          Table::real(&RtvSmoothParams::lambda, "lambda", Interval::open_closed(0, 0.2), SamplingScale::log,
                      "smoothness weight λ (the authors use up to 0.05)"),
          Table::real(&RtvSmoothParams::sigma, "sigma", Interval::open_closed(0, 6), SamplingScale::linear,
                      "texture scale σ in pixels: the Gaussian that separates texture from structure"),
          Table::real(&RtvSmoothParams::sharpness, "sharpness", Interval::closed(1e-3, 0.03), SamplingScale::log,
                      "ε_s: floor of the gradient magnitude in the weights; smaller gives sharper edges"),
          Table::integer(&RtvSmoothParams::iterations, "iterations", IntegerRange(1, 10),
                         "outer iterations (σ halves each time, down to 0.5)"),
          Table::choice(&RtvSmoothParams::solver, "solver", {{"pcg", RtvSolver::pcg}, {"direct", RtvSolver::direct}},
                        "pcg: the authors' MATLAB branch (MIC(0) + PCG to relative residual 0.1); direct: exact sparse "
                        "Cholesky (the branch Octave takes)"),
      }};
  return table;
}

// MATLAB fspecial('gaussian', [1 n], σ) with n = round(5σ) | 1.
std::vector<double> gaussian_kernel(double sigma) {
  const int n = static_cast<int>(std::round(5.0 * sigma)) | 1;
  const int half = (n - 1) / 2;
  std::vector<double> k(n);
  double max = 0;
  for (int i = 0; i < n; ++i) {
    const double d = i - half;
    k[i] = std::exp(-(d * d) / (2.0 * sigma * sigma));
    max = std::max(max, k[i]);
  }
  double sum = 0;
  for (double& v : k) {
    if (v < kMatlabEps * max) v = 0;
    sum += v;
  }
  for (double& v : k) v /= sum;
  return k;
}

// conv2(conv2(im, g, 'same'), g', 'same'): zero padding, horizontal first.
// dst[i] += src[i]·w. AVX2 where the CPU has it (the same results: an
// elementwise multiply and add, never fused).
[[gnu::target_clones("avx2", "default")]] void add_scaled(double* dst, const double* src, double w, int n) {
  for (int i = 0; i < n; ++i) dst[i] += src[i] * w;
}

// out = conv2(conv2(in, g, 'same'), g', 'same'); tmp: scratch of in's size.
void separable_gaussian(const Plane& in, int rows, int cols, const std::vector<double>& k, Plane& tmp, Plane& out) {
  const int half = static_cast<int>(k.size() - 1) / 2;
  tmp.resize(in.size());
  out.resize(in.size());
  // Tap by tap over a whole row, so that the loops vectorise; each output
  // still adds its taps in the same order (i ascending).
  tbb::parallel_for(0, rows, [&](int y) {
    const double* src = in.data() + static_cast<std::size_t>(y) * cols;
    double* dst = tmp.data() + static_cast<std::size_t>(y) * cols;
    std::fill(dst, dst + cols, 0.0);
    for (int i = -half; i <= half; ++i) {
      const int begin = std::max(0, i), end = std::min(cols, cols + i);
      if (begin < end) add_scaled(dst + begin, src + begin - i, k[i + half], end - begin);
    }
  });
  tbb::parallel_for(0, rows, [&](int y) {
    double* dst = out.data() + static_cast<std::size_t>(y) * cols;
    std::fill(dst, dst + cols, 0.0);
    for (int i = -half; i <= half; ++i) {
      const int yy = y - i;
      if (yy < 0 || yy >= rows) continue;
      add_scaled(dst, tmp.data() + static_cast<std::size_t>(yy) * cols, k[i + half], cols);
    }
  });
}

// One channel's share of a row's gradient terms, added to the row sums: the
// magnitude of its forward differences fₓ, fᵧ and |gₓ|, |gᵧ| of its blurred
// version, for the columns 0..n−1 that have an east neighbour. `south` rows
// are the rows below (the rows themselves on the last row: differences 0).
[[gnu::target_clones("avx2", "default")]] void add_gradient_terms(const double* x, const double* x_south,
                                                                   const double* b, const double* b_south, int n,
                                                                   double* magnitude, double* gx, double* gy) {
  for (int i = 0; i < n; ++i) {
    const double fx = x[i + 1] - x[i], fy = x_south[i] - x[i];
    magnitude[i] += std::sqrt(fx * fx + fy * fy);
    gx[i] += std::abs(b[i + 1] - b[i]);
    gy[i] += std::abs(b_south[i] - b[i]);
  }
}

[[gnu::target_clones("avx2", "default")]] void weights_from_terms(const double* magnitude, const double* gx,
                                                                   const double* gy, int n, double channels,
                                                                   double sharpness, double half_lambda, double* wh,
                                                                   double* wv) {
  for (int i = 0; i < n; ++i) {
    const double wto = 1.0 / std::max(magnitude[i] / channels, sharpness);
    wh[i] = half_lambda * ((1.0 / std::max(gx[i] / channels, kGradientFloor)) * wto);
    wv[i] = half_lambda * ((1.0 / std::max(gy[i] / channels, kGradientFloor)) * wto);
  }
}

// Texture-aware weights from the current estimate x (computeTextureWeights),
// already multiplied by λ' = λ/2, into w (sized here). `blurred` and `tmp`
// are scratch planes kept across the outer iterations.
void texture_weights(const std::vector<Plane>& x, int rows, int cols, double sigma, double sharpness,
                     double half_lambda, std::vector<Plane>& blurred, Plane& tmp, GridWeights& w) {
  const int channels = static_cast<int>(x.size());
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const std::vector<double> kernel = gaussian_kernel(sigma);
  blurred.resize(channels);
  for (int c = 0; c < channels; ++c) separable_gaussian(x[c], rows, cols, kernel, tmp, blurred[c]);
  w.rows = rows;
  w.cols = cols;
  w.horizontal.resize(n);
  w.vertical.resize(n);
  tbb::parallel_for(tbb::blocked_range<int>(0, rows), [&](const tbb::blocked_range<int>& range) {
    std::vector<double> magnitude(cols), gx(cols), gy(cols);
    for (int y = range.begin(); y < range.end(); ++y) {
      const std::size_t row = static_cast<std::size_t>(y) * cols;
      // The last row and column have no south/east neighbour: their forward
      // differences are 0 (the last row is its own "south").
      const std::size_t south = y + 1 < rows ? row + cols : row;
      std::fill(magnitude.begin(), magnitude.end(), 0.0);
      std::fill(gx.begin(), gx.end(), 0.0);
      std::fill(gy.begin(), gy.end(), 0.0);
      for (int c = 0; c < channels; ++c) {
        const double *xc = x[c].data(), *bc = blurred[c].data();
        add_gradient_terms(xc + row, xc + south, bc + row, bc + south, cols - 1, magnitude.data(), gx.data(), gy.data());
        const std::size_t last = row + cols - 1;  // no east neighbour: fₓ = gₓ = 0 (gx stays 0)
        const double fy = xc[south + cols - 1] - xc[last];
        magnitude[cols - 1] += std::sqrt(fy * fy);
        gy[cols - 1] += std::abs(bc[south + cols - 1] - bc[last]);
      }
      double* wh = w.horizontal.data() + row;
      double* wv = w.vertical.data() + row;
      weights_from_terms(magnitude.data(), gx.data(), gy.data(), cols, channels, sharpness, half_lambda, wh, wv);
      wh[cols - 1] = 0.0;  // no east edge
      if (y + 1 == rows) std::fill(wv, wv + cols, 0.0);  // no south edges
    }
  });
}

std::size_t pcg_bytes(int rows, int cols) {
  // Planes (input, estimate, blurred), weights, MIC(0) factor and PCG vectors.
  return static_cast<std::size_t>(rows) * cols * 8 * 24;
}

Image smooth_valid(const Image& input, const RtvSmoothParams& params, RtvReport* report) {
  require_image_shape(input, "rtv_smooth");
  const int rows = input.rows, cols = input.cols, channels = input.channels();
  require_solver_memory("rtv_smooth", rows, cols,
                 params.solver == RtvSolver::direct ? estimate_grid_cholesky_bytes(rows, cols) : pcg_bytes(rows, cols));
  require_image(input, "rtv_smooth");  // the values, once the size is known to fit
  const std::vector<Plane> original = to_double_planes(input);
  std::vector<Plane> x = original;
  const double half_lambda = params.lambda / 2.0;
  double sigma = params.sigma;
  const auto cholesky = params.solver == RtvSolver::direct ? cached_grid_cholesky(rows, cols) : nullptr;
  std::vector<Plane> blurred;
  Plane scratch;
  GridWeights w;
  for (int iteration = 0; iteration < params.iterations; ++iteration) {
    texture_weights(x, rows, cols, sigma, params.sharpness, half_lambda, blurred, scratch, w);
    // The right-hand side is always the original image.
    if (params.solver == RtvSolver::direct) {
      std::vector<const double*> rhs(channels);
      std::vector<double*> out(channels);
      for (int c = 0; c < channels; ++c) {
        rhs[c] = original[c].data();
        out[c] = x[c].data();
      }
      cholesky->solve(w, {}, rhs, out);
    } else {
      const Mic0Preconditioner mic0(w);
      std::vector<PcgResult> results(channels);
      tbb::parallel_for(0, channels, [&](int c) {
        results[c] = mic0_pcg_solve(w, mic0, original[c].data(), x[c].data(), kPcgTolerance, kPcgMaxIterations);
      });
      if (report) {
        for (const auto& r : results) {
          report->pcg_iterations.push_back(r.iterations);
          report->pcg_relative_residuals.push_back(r.relative_residual);
        }
      }
    }
    sigma = std::max(sigma / 2.0, 0.5);
  }
  return from_double_planes(x, rows, cols);
}

}  // namespace

Image rtv_smooth(const Image& input, const RtvSmoothParams& params, RtvReport* report) {
  params_table().validate(params);
  return smooth_valid(input, params, report);
}

OperatorEntry rtv_smooth_entry() {
  return make_entry<RtvSmoothParams>({
      .summary = "relative-total-variation structure extraction: removes texture, keeps main structures",
      .citation = "L. Xu, Q. Yan, Y. Xia, J. Jia, \"Structure Extraction from Texture via Relative Total Variation\", "
                  "ACM TOG 31(6) (SIGGRAPH Asia), 2012; matches the authors' tsmooth.m (solver=pcg: its MATLAB "
                  "branch, solver=direct: its Octave branch)",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = &params_table(),
      // PCG: 100 B/px grey, 183 B/px RGB measured at 1 MP; direct adds the factor.
      .keeps_constant = 1e-6,
      .peak_bytes = [](const Image& img, const RtvSmoothParams& p) {
        const double planes = pixel_count(img) * (24.0 + 84.0 * img.channels());
        return p.solver == RtvSolver::direct
                   ? planes + 1.5 * static_cast<double>(estimate_grid_cholesky_bytes(img.rows, img.cols))
                   : planes;
      },
      .run = [](const Image& img, const RtvSmoothParams& p, const RunContext&) { return smooth_valid(img, p, nullptr); },
  });
}

}  // namespace opforge
