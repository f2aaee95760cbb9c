// Rolling guidance filter (Zhang et al. 2014) on Chen's bilateral grid,
// OPERATORS.md §4.

#include "opforge/operators/rolling_guidance.hpp"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace opforge {
namespace {

constexpr int kPadding = 3;  // grid cells of padding on each side of each axis

using Table = ParamTable<RollingGuidanceParams>;
const Table& params_table() {
  static const Table table{
      "rolling_guidance",
      {
          Table::real(&RollingGuidanceParams::sigma_s, "sigma_s", Interval::closed(0.5, 50), SamplingScale::linear,
                      "spatial sigma: the scale of the structures removed, in pixels"),
          Table::real(&RollingGuidanceParams::sigma_r, "sigma_r", Interval::open_closed(0, 1), SamplingScale::log,
                      "range sigma (the authors' example and Fan et al. use 0.05; the code's default is 0.1)"),
          Table::integer(&RollingGuidanceParams::iterations, "iterations", IntegerRange(1, 20),
                         "rolling steps (the first is a Gaussian: its guide is constant)"),
      }};
  return table;
}

// MATLAB round for v ≥ 0 (half away from zero), inline: v − floor(v) is
// exact, so this equals std::round without a libm call per pixel.
inline double matlab_round(double v) {
  const double r = std::floor(v);
  return v - r >= 0.5 ? r + 1 : r;
}

// The same for 0 ≤ v < 2³¹, as an int and without a branch: the splat
// rounds every pixel's range coordinate, and a branch on which way went
// mispredicted about every other pixel of a textured image.
inline int matlab_round_int(double v) {
  const int t = static_cast<int>(v);  // floor, for v ≥ 0
  return t + static_cast<int>(v - t >= 0.5);
}

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

// The whole grid at once: bilateralFilter.m transcribed (the reference the
// streaming version below is tested against, bit for bit).
Plane full_grid_step(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r,
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


// The streaming grid. A grid row gy (one y cell: a gw×gd "slab") depends on
// the pixels that splat into rows gy−1..gy+1 only, and a pixel row slices
// two adjacent grid rows. So the grid is built, blurred and sliced slab by
// slab in a few cache-sized buffers instead of a whole grid (tens of MB at
// 1 MP) being streamed through memory six times. The arithmetic is the full
// grid's, operation for operation: results are bit-identical.
struct GridShape {
  int gh = 0, gw = 0, gd = 0;
  double e0 = 0, sigma_s = 1, sigma_r = 1;
  std::size_t slab() const { return 2 * static_cast<std::size_t>(gw) * gd; }
};

GridShape grid_shape(double e_min, double e_max, int rows, int cols, double sigma_s, double sigma_r) {
  GridShape g;
  g.e0 = e_min;
  g.sigma_s = sigma_s;
  g.sigma_r = sigma_r;
  g.gh = static_cast<int>(std::floor((rows - 1) / sigma_s)) + 1 + 2 * kPadding;
  g.gw = static_cast<int>(std::floor((cols - 1) / sigma_s)) + 1 + 2 * kPadding;
  g.gd = static_cast<int>(std::floor((e_max - e_min) / sigma_r)) + 1 + 2 * kPadding;
  return g;
}

// The grid's depth follows the guide's value range, which stays within the
// input's range and 0 (J⁰ = 0; each step interpolates normalised cells).
double grid_depth(const Image& input, double sigma_r) {
  double lo = 0, hi = 0;
  cv::minMaxLoc(input.reshape(1), &lo, &hi);
  return (std::max(hi, 0.0) - std::min(lo, 0.0)) / sigma_r + 1 + 2 * kPadding;
}

// Planes: 33 B/px grey, 88 B/px RGB measured at 1 MP; each worker thread
// keeps five grid slabs (three raw rows, the finished and the blurred row).
double rolling_guidance_peak_bytes(const Image& input, double sigma_s, double depth) {
  const double gw = std::floor((input.cols - 1) / sigma_s) + 1 + 2 * kPadding;
  const double slab = 2.0 * gw * depth * sizeof(double);
  return pixel_count(input) * (8.0 + 42.0 * input.channels()) + operator_threads() * 5.0 * slab;
}

// Cells [lo, hi] of a grid row's z axis; empty when hi < lo.
struct Window {
  int lo = 0, hi = -1;
};

// Buffers of one band's run, kept per worker thread across bands and steps
// (fresh allocations would be zeroed and page-faulted every time). The raw
// ring must be all zero on entry: it remembers what its rows dirtied.
struct BandWorkspace {
  int gw = 0, gd = 0;
  std::vector<double> raw, fin, blurred, save, prev, quotient;
  Window raw_window[3];

  void prepare(int grid_w, int grid_d) {
    const std::size_t block = 2 * static_cast<std::size_t>(grid_d), slab = block * grid_w;
    if (grid_w != gw || grid_d != gd) {
      gw = grid_w;
      gd = grid_d;
      raw.assign(3 * slab, 0.0);
      fin.resize(slab);
      blurred.resize(slab);
      save.resize(block);
      prev.resize(block);
      for (Window& w : raw_window) w = {};
      return;
    }
    for (int k = 0; k < 3; ++k) {  // clear what the last band left
      Window& w = raw_window[k];
      double* s = raw.data() + static_cast<std::size_t>(k) * slab;
      if (w.hi >= w.lo) {
        for (int x = 0; x < gw; ++x) std::fill(s + x * block + 2 * w.lo, s + x * block + 2 * w.hi + 2, 0.0);
      }
      w = {};
    }
  }
};

// Slices pixel rows [y_begin, y_end) of `out`, splatting, blurring and
// normalising the grid rows they need. Each grid row keeps the window of z
// cells that can be non-zero (the range its pixels splat to, ±1 for the z
// blur, over the three rows the y blur mixes); cells outside stay exactly 0
// in the whole-grid computation, so skipping them changes no result.
// Returns the minimum and maximum value written (the next step's range).
std::pair<double, double> stream_band(const Plane& data, const Plane& edge, int rows, int cols, const GridShape& g,
                                      int y_begin, int y_end, Plane& out, BandWorkspace& ws) {
  const double side = std::exp(-0.5);
  const std::size_t slab = g.slab();
  const int gd = g.gd, gw = g.gw, gh = g.gh;
  const std::size_t block = 2 * static_cast<std::size_t>(gd);
  // First pixel row of each grid row (rows splat to round(y/σs) + padding).
  std::vector<int> row_begin(static_cast<std::size_t>(gh) + 1, rows);
  for (int y = rows - 1; y >= 0; --y) row_begin[static_cast<std::size_t>(matlab_round(y / g.sigma_s)) + kPadding] = y;
  for (int r = gh - 1; r >= 0; --r) row_begin[r] = std::min(row_begin[r], row_begin[r + 1]);
  // Per column: the splat cell, and the slice's lower cell and weights.
  std::vector<int> cell_x(static_cast<std::size_t>(cols)), x0s(static_cast<std::size_t>(cols));
  std::vector<double> fxs(static_cast<std::size_t>(cols));
  for (int x = 0; x < cols; ++x) {
    cell_x[x] = static_cast<int>(matlab_round(x / g.sigma_s)) + kPadding;
    const double gx = x / g.sigma_s + kPadding;
    x0s[x] = std::min(static_cast<int>(gx), gw - 2);
    fxs[x] = gx - x0s[x];
  }
  const auto slice_row = [&](int y) { return std::min(static_cast<int>(y / g.sigma_s + kPadding), gh - 2); };
  const int first = slice_row(y_begin), last = slice_row(y_end - 1) + 1;
  // (E − e0)/σr of the pixel rows this band splats, computed once for the
  // splat (rounded) and the slice (floor and fraction).
  const int q_row0 = row_begin[std::max(first - 1, 0)], q_row1 = row_begin[std::min(last + 2, gh)];
  ws.prepare(gw, gd);
  std::vector<double>& quotient = ws.quotient;
  quotient.resize(static_cast<std::size_t>(q_row1 - q_row0) * cols);
  for (int y = q_row0; y < q_row1; ++y) {
    const double* e = edge.data() + static_cast<std::size_t>(y) * cols;
    double* q = quotient.data() + static_cast<std::size_t>(y - q_row0) * cols;
    for (int x = 0; x < cols; ++x) q[x] = (e[x] - g.e0) / g.sigma_r;
  }

  // Rings: raw splatted rows r−1, r, r+1 and normalised (value-only) rows r−1, r.
  std::vector<double>&raw = ws.raw, &fin = ws.fin, &save = ws.save, &prev = ws.prev;
  int raw_row[3] = {-1, -1, -1};
  Window* raw_window = ws.raw_window;
  Window fin_window[2];
  const auto raw_slab = [&](int r, Window& window) -> const double* {
    const int k = r % 3;
    double* s = raw.data() + static_cast<std::size_t>(k) * slab;
    if (raw_row[k] != r) {
      Window& w = raw_window[k];
      if (w.hi >= w.lo) {  // clear what the slot's previous row used
        for (int x = 0; x < gw; ++x) std::fill(s + x * block + 2 * w.lo, s + x * block + 2 * w.hi + 2, 0.0);
      }
      raw_row[k] = r;
      w = {gd, -1};
      // Column-major pixel order, as bilateralFilter.m accumulates.
      for (int x = 0; x < cols; ++x) {
        double* column = s + static_cast<std::size_t>(cell_x[x]) * block;
        for (int y = row_begin[r]; y < row_begin[r + 1]; ++y) {
          const std::size_t i = static_cast<std::size_t>(y) * cols + x;
          const int z = matlab_round_int(quotient[static_cast<std::size_t>(y - q_row0) * cols + x]) + kPadding;
          column[2 * z] += data[i];
          column[2 * z + 1] += 1.0;
          w.lo = std::min(w.lo, z);
          w.hi = std::max(w.hi, z);
        }
      }
    }
    window.lo = std::min(window.lo, raw_window[k].lo);
    window.hi = std::max(window.hi, raw_window[k].hi);
    return s;
  };
  // Blurs grid row r into `blurred` (value, weight pairs), then normalises
  // it into the compact value slab the slice reads.
  std::vector<double>& blurred = ws.blurred;
  const auto build_final = [&](int r) {
    double* f = blurred.data();
    double* values = fin.data() + static_cast<std::size_t>(r % 2) * (slab / 2);
    Window w{gd, -1};
    const double* cur = raw_slab(r, w);
    const double* up = r > 0 ? raw_slab(r - 1, w) : nullptr;
    const double* down = r + 1 < gh ? raw_slab(r + 1, w) : nullptr;
    Window& fw = fin_window[r % 2];
    fw = w.hi >= w.lo ? Window{std::max(w.lo - 1, 0), std::min(w.hi + 1, gd - 1)} : Window{};
    if (fw.hi < fw.lo) return;
    const std::size_t e0 = 2 * static_cast<std::size_t>(fw.lo), e1 = 2 * static_cast<std::size_t>(fw.hi) + 2;
    for (int k = 0; k < gw; ++k) {  // along y; one loop per case so each vectorizes
      const std::size_t o = k * block;
      if (up && down) {
        for (std::size_t e = o + e0; e < o + e1; ++e) f[e] = (cur[e] + side * up[e]) + side * down[e];
      } else if (up) {
        for (std::size_t e = o + e0; e < o + e1; ++e) f[e] = cur[e] + side * up[e];
      } else if (down) {
        for (std::size_t e = o + e0; e < o + e1; ++e) f[e] = cur[e] + side * down[e];
      } else {
        std::copy(cur + o + e0, cur + o + e1, f + o + e0);
      }
    }
    for (int k = 0; k < gw; ++k) {  // along x, from the previous block's original values
      double* c = f + k * block;
      const double* next = k + 1 < gw ? c + block : nullptr;
      for (std::size_t e = e0; e < e1; ++e) {
        save[e] = c[e];
        double v = c[e];
        if (k > 0) v += side * prev[e];
        if (next) v += side * next[e];
        c[e] = v;
      }
      std::swap(save, prev);
    }
    for (int k = 0; k < gw; ++k) {  // along z (the cells beside the window are 0), then normalise
      const double* line = f + k * block;
      double* out_line = values + static_cast<std::size_t>(k) * gd;
      for (int z = fw.lo; z <= fw.hi; ++z) {
        double sv = line[2 * z], sw = line[2 * z + 1];
        if (z > fw.lo) {
          sv += side * line[2 * z - 2];
          sw += side * line[2 * z - 1];
        }
        if (z < fw.hi) {
          sv += side * line[2 * z + 2];
          sw += side * line[2 * z + 3];
        }
        out_line[z] = sw == 0 ? 0.0 : sv / sw;
      }
    }
  };

  int y = y_begin;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int r = first; r <= last; ++r) {
    build_final(r);
    if (r == first) continue;
    // Pixel rows whose lower grid row is r − 1 now have both of theirs.
    const double* f0 = fin.data() + static_cast<std::size_t>((r - 1) % 2) * (slab / 2);
    const double* f1 = fin.data() + static_cast<std::size_t>(r % 2) * (slab / 2);
    for (; y < y_end && slice_row(y) == r - 1; ++y) {
      const double gy = y / g.sigma_s + kPadding;
      const double fy = gy - (r - 1);
      const double wy[2] = {1 - fy, fy};
      const double* q = quotient.data() + static_cast<std::size_t>(y - q_row0) * cols;
      for (int x = 0; x < cols; ++x) {
        const std::size_t i = static_cast<std::size_t>(y) * cols + x;
        const double gz = q[x] + kPadding;
        const int x0 = x0s[x], z0 = std::min(static_cast<int>(gz), gd - 2);
        const double fx = fxs[x], fz = gz - z0;
        const double wx[2] = {1 - fx, fx}, wz[2] = {1 - fz, fz};
        const std::size_t base = static_cast<std::size_t>(x0) * gd + static_cast<std::size_t>(z0);
        double v = 0;
        for (int dy = 0; dy < 2; ++dy) {
          const double* f = (dy ? f1 : f0) + base;
          for (int dx = 0; dx < 2; ++dx) {
            const double wyx = wy[dy] * wx[dx];
            v += wyx * wz[0] * f[dx * gd];
            v += wyx * wz[1] * f[dx * gd + 1];
          }
        }
        out[i] = std::isnan(v) ? data[i] : v;
        lo = std::min(lo, out[i]);
        hi = std::max(hi, out[i]);
      }
    }
  }
  return {lo, hi};
}

// Pixel-row bands of one step; a band recomputes at most three grid rows of
// its neighbour, and the split depends only on the image and σs (not on the
// thread count), though any split gives the same result.
std::vector<std::pair<int, int>> bands_of(int rows, double sigma_s) {
  const int grid_rows = static_cast<int>(rows / sigma_s) + 1;
  const int bands = std::clamp(grid_rows / 32, 1, 8);
  std::vector<std::pair<int, int>> out;
  for (int b = 0; b < bands; ++b) out.emplace_back(rows * b / bands, rows * (b + 1) / bands);
  return out;
}

}  // namespace

Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r) {
  const auto [lo, hi] = std::minmax_element(edge.begin(), edge.end());
  const GridShape g = grid_shape(*lo, *hi, rows, cols, sigma_s, sigma_r);
  Plane out(data.size());
  const auto bands = bands_of(rows, sigma_s);
  tbb::enumerable_thread_specific<BandWorkspace> workspaces;
  tbb::parallel_for(std::size_t{0}, bands.size(), [&](std::size_t b) {
    stream_band(data, edge, rows, cols, g, bands[b].first, bands[b].second, out, workspaces.local());
  });
  return out;
}

namespace reference {

Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r) {
  std::vector<double> grid;
  return full_grid_step(data, edge, rows, cols, sigma_s, sigma_r, grid);
}

}  // namespace reference

namespace {

Image filter_valid(const Image& input, const RollingGuidanceParams& params) {
  // A value range far beyond [0, 1] (or a tiny sigma_r) makes the grid deep.
  const double depth = grid_depth(input, params.sigma_r);
  if (depth > 1e8) {
    throw Error("rolling_guidance: the image's value range over sigma_r = " + format_value(params.sigma_r) +
                " needs a bilateral grid " + format_value(std::round(depth)) +
                " cells deep; valid: at most 1e8 (values nominally in [0, 1])");
  }
  require_memory("rolling_guidance", "a " + std::to_string(input.cols) + "x" + std::to_string(input.rows) + " image",
                 rolling_guidance_peak_bytes(input, params.sigma_s, depth));
  const int rows = input.rows, cols = input.cols;
  const std::vector<Plane> source = to_double_planes(input);
  // Channels are independent: each rolls on its own, its bands in parallel
  // (nested), so no channel waits for another between steps.
  std::vector<Plane> guide(source.size());
  const auto bands = bands_of(rows, params.sigma_s);
  tbb::enumerable_thread_specific<BandWorkspace> workspaces;
  tbb::parallel_for(std::size_t{0}, source.size(), [&](std::size_t c) {
    Plane current(source[c].size(), 0.0), next(source[c].size());  // J⁰ = 0
    double lo = 0, hi = 0;
    std::vector<std::pair<double, double>> ranges(bands.size());
    for (int t = 0; t < params.iterations; ++t) {
      const GridShape shape = grid_shape(lo, hi, rows, cols, params.sigma_s, params.sigma_r);
      tbb::parallel_for(std::size_t{0}, bands.size(), [&](std::size_t b) {
        ranges[b] = stream_band(source[c], current, rows, cols, shape, bands[b].first, bands[b].second, next,
                                workspaces.local());
      });
      std::swap(current, next);
      lo = ranges[0].first;
      hi = ranges[0].second;
      for (const auto& [l, h] : ranges) {
        lo = std::min(lo, l);
        hi = std::max(hi, h);
      }
    }
    guide[c] = std::move(current);
  });
  return from_double_planes(guide, rows, cols);
}

}  // namespace

Image rolling_guidance(const Image& input, const RollingGuidanceParams& params) {
  require_image(input, "rolling_guidance");
  params_table().validate(params);
  return filter_valid(input, params);
}

OperatorEntry rolling_guidance_entry() {
  return make_entry<RollingGuidanceParams>({
      .summary = "rolling guidance filter: removes small structures, then restores the large edges iteratively",
      .citation = "Q. Zhang, X. Shen, L. Xu, J. Jia, \"Rolling Guidance Filter\", ECCV 2014; each step J. Chen, S. "
                  "Paris, F. Durand's bilateral grid (SIGGRAPH 2007); matches the authors' RollingGuidanceFilter.m",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = &params_table(),
      .keeps_constant = 1e-6,
      .peak_bytes = [](const Image& img, const RollingGuidanceParams& p) {
        return rolling_guidance_peak_bytes(img, p.sigma_s, grid_depth(img, p.sigma_r));
      },
      .run = [](const Image& img, const RollingGuidanceParams& p, const RunContext&) { return filter_valid(img, p); },
  });
}

}  // namespace opforge
