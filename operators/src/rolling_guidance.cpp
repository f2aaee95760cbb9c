// Rolling guidance filter (Zhang et al. 2014) on Chen's bilateral grid,
// OPERATORS.md §4.

#include "opforge/operators/rolling_guidance.hpp"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "entries.hpp"
#include "opforge/core/error.hpp"

namespace opforge {
namespace {

constexpr int kPadding = 3;  // grid cells of padding on each side of each axis

const std::vector<ParamSpec>& rgf_specs() {
  static const std::vector<ParamSpec> specs = {
      real_param("sigma_s", 3.0, 0.5, 50.0, false, false, SamplingScale::linear,
                 "spatial sigma: the scale of the structures removed, in pixels"),
      real_param("sigma_r", 0.05, 0.0, 1.0, true, false, SamplingScale::log,
                 "range sigma (the authors' example and Fan et al. use 0.05; the code's default is 0.1)"),
      integer_param("iterations", 4, 1, 20, "rolling steps (the first is a Gaussian: its guide is constant)"),
  };
  return specs;
}

// MATLAB round: half away from zero (inputs here are ≥ 0).
double matlab_round(double v) { return std::round(v); }

// The grid holds (value, weight) pairs, cell (y, x, z) at 2·((y·gw + x)·gd + z).
// Blurring with the 3×3×3 kernel exp(−(i²+j²+k²)/2) is three 1-D passes of
// [e^{-1/2}, 1, e^{-1/2}] with zero padding (the kernel is separable).
//
// Along y and x, neighbouring cells are whole contiguous blocks apart: the
// pass walks the blocks in order and keeps the previous block's original
// values, so every access is sequential (a per-line walk would touch one
// cache line per cell).
void blur_blocks(std::vector<double>& g, std::size_t outer, std::size_t count, std::size_t block) {
  const double side = std::exp(-0.5);
  constexpr std::size_t kChunk = 2048;
  const std::size_t chunks = (block + kChunk - 1) / kChunk;
  tbb::parallel_for(std::size_t{0}, outer * chunks, [&](std::size_t task) {
    const std::size_t o = task / chunks, e0 = (task % chunks) * kChunk, e1 = std::min(block, e0 + kChunk);
    double prev[kChunk], save[kChunk];
    double* base = g.data() + o * count * block;
    for (std::size_t k = 0; k < count; ++k) {
      double* cur = base + k * block;
      const double* next = k + 1 < count ? cur + block : nullptr;
      for (std::size_t e = e0; e < e1; ++e) {
        save[e - e0] = cur[e];
        double s = cur[e];
        if (k > 0) s += side * prev[e - e0];
        if (next) s += side * next[e];
        cur[e] = s;
      }
      std::copy(save, save + (e1 - e0), prev);
    }
  });
}

// Along z the pairs of one (y, x) column are contiguous.
void blur_depth(std::vector<double>& g, std::size_t columns, int depth) {
  const double side = std::exp(-0.5);
  tbb::parallel_for(std::size_t{0}, columns, [&](std::size_t c) {
    double* line = g.data() + c * 2 * depth;
    double prev_v = 0, prev_w = 0;
    for (int z = 0; z < depth; ++z) {
      const double v = line[2 * z], w = line[2 * z + 1];
      double sv = v, sw = w;
      if (z > 0) {
        sv += side * prev_v;
        sw += side * prev_w;
      }
      if (z + 1 < depth) {
        sv += side * line[2 * z + 2];
        sw += side * line[2 * z + 3];
      }
      line[2 * z] = sv;
      line[2 * z + 1] = sw;
      prev_v = v;
      prev_w = w;
    }
  });
}

// One bilateral-grid step with a reusable grid buffer.
Plane bilateral_grid_step(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r,
                          std::vector<double>& grid) {
  const auto [lo_it, hi_it] = std::minmax_element(edge.begin(), edge.end());
  const double e0 = *lo_it, delta = *hi_it - *lo_it;
  const int gh = static_cast<int>(std::floor((rows - 1) / sigma_s)) + 1 + 2 * kPadding;
  const int gw = static_cast<int>(std::floor((cols - 1) / sigma_s)) + 1 + 2 * kPadding;
  const int gd = static_cast<int>(std::floor(delta / sigma_r)) + 1 + 2 * kPadding;
  const std::size_t cells = static_cast<std::size_t>(gh) * gw * gd;
  const auto cell = [&](int y, int x, int z) { return (static_cast<std::size_t>(y) * gw + x) * gd + z; };
  grid.assign(2 * cells, 0.0);
  // Splat in MATLAB's column-major pixel order (it fixes the summation order).
  for (int x = 0; x < cols; ++x) {
    for (int y = 0; y < rows; ++y) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const std::size_t c = cell(static_cast<int>(matlab_round(y / sigma_s)) + kPadding,
                                 static_cast<int>(matlab_round(x / sigma_s)) + kPadding,
                                 static_cast<int>(matlab_round((edge[i] - e0) / sigma_r)) + kPadding);
      grid[2 * c] += data[i];
      grid[2 * c + 1] += 1.0;
    }
  }
  blur_blocks(grid, 1, gh, 2 * static_cast<std::size_t>(gw) * gd);   // along y
  blur_blocks(grid, gh, gw, 2 * static_cast<std::size_t>(gd));       // along x
  blur_depth(grid, static_cast<std::size_t>(gh) * gw, gd);            // along z
  // Normalise before interpolating; empty cells hold 0.
  tbb::parallel_for(std::size_t{0}, cells, [&](std::size_t c) {
    grid[2 * c] = grid[2 * c + 1] == 0 ? 0.0 : grid[2 * c] / grid[2 * c + 1];
  });
  // Slice: trilinear interpolation at the unrounded grid position.
  Plane out(data.size());
  tbb::parallel_for(0, rows, [&](int y) {
    const double gy = y / sigma_s + kPadding;
    const int y0 = std::min(static_cast<int>(gy), gh - 2);
    const double fy = gy - y0;
    for (int x = 0; x < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const double gx = x / sigma_s + kPadding, gz = (edge[i] - e0) / sigma_r + kPadding;
      const int x0 = std::min(static_cast<int>(gx), gw - 2), z0 = std::min(static_cast<int>(gz), gd - 2);
      const double fx = gx - x0, fz = gz - z0;
      double v = 0;
      for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
          for (int dz = 0; dz < 2; ++dz) {
            const double w = (dy ? fy : 1 - fy) * (dx ? fx : 1 - fx) * (dz ? fz : 1 - fz);
            v += w * grid[2 * cell(y0 + dy, x0 + dx, z0 + dz)];
          }
        }
      }
      out[i] = std::isnan(v) ? data[i] : v;
    }
  });
  return out;
}

}  // namespace

Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r) {
  std::vector<double> grid;
  return bilateral_grid_step(data, edge, rows, cols, sigma_s, sigma_r, grid);
}

Image rolling_guidance(const Image& input, const RollingGuidanceParams& params) {
  require_image(input, "rolling_guidance");
  ParamValues v;
  v.set("sigma_s", params.sigma_s);
  v.set("sigma_r", params.sigma_r);
  v.set("iterations", static_cast<double>(params.iterations));
  validate_params("rolling_guidance", rgf_specs(), v);
  const int rows = input.rows, cols = input.cols;
  const std::vector<Plane> source = to_double_planes(input);
  std::vector<Plane> guide(source.size(), Plane(source[0].size(), 0.0));  // J⁰ = 0
  // Grids are tens of MB at 1 MP: reuse one per worker thread (page faults
  // of fresh allocations cost more than the filtering on a VM).
  tbb::enumerable_thread_specific<std::vector<double>> grids;
  tbb::parallel_for(0, static_cast<int>(source.size()), [&](int c) {
    std::vector<double>& grid = grids.local();
    for (int t = 0; t < params.iterations; ++t) {
      guide[c] = bilateral_grid_step(source[c], guide[c], rows, cols, params.sigma_s, params.sigma_r, grid);
    }
  });
  return from_double_planes(guide, rows, cols);
}

OperatorEntry rolling_guidance_entry() {
  return {
      .name = "rolling_guidance",
      .summary = "rolling guidance filter: removes small structures, then restores the large edges iteratively",
      .citation = "Q. Zhang, X. Shen, L. Xu, J. Jia, \"Rolling Guidance Filter\", ECCV 2014; each step J. Chen, S. "
                  "Paris, F. Durand's bilateral grid (SIGGRAPH 2007); matches the authors' RollingGuidanceFilter.m",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = rgf_specs(),
      .run = [](const Image& img, const ParamValues& p, const RunContext&) {
        return rolling_guidance(img, {.sigma_s = p.number("sigma_s"),
                                      .sigma_r = p.number("sigma_r"),
                                      .iterations = static_cast<int>(p.integer("iterations"))});
      },
  };
}

}  // namespace opforge
