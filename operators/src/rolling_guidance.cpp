// Rolling guidance filter (Zhang et al. 2014) on Chen's bilateral grid,
// OPERATORS.md §4.

#include "opforge/operators/rolling_guidance.hpp"

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

// Blurs a grid along one axis with [e^{-1/2}, 1, e^{-1/2}] and zero padding;
// the 3×3×3 kernel exp(−(i²+j²+k²)/2) is the product of three of these.
void blur_axis(std::vector<double>& g, int n0, int n1, int n2, int axis) {
  const double side = std::exp(-0.5);
  const std::size_t stride = axis == 0 ? static_cast<std::size_t>(n1) * n2 : axis == 1 ? n2 : 1;
  const int length = axis == 0 ? n0 : axis == 1 ? n1 : n2;
  const int lines_a = axis == 0 ? n1 : n0, lines_b = axis == 2 ? n1 : n2;
  tbb::parallel_for(0, lines_a, [&](int a) {
    std::vector<double> line(length);
    for (int b = 0; b < lines_b; ++b) {
      std::size_t base;
      if (axis == 0) base = static_cast<std::size_t>(a) * n2 + b;
      else if (axis == 1) base = static_cast<std::size_t>(a) * n1 * n2 + b;
      else base = (static_cast<std::size_t>(a) * n1 + b) * n2;
      for (int i = 0; i < length; ++i) line[i] = g[base + i * stride];
      for (int i = 0; i < length; ++i) {
        double s = line[i];
        if (i > 0) s += side * line[i - 1];
        if (i + 1 < length) s += side * line[i + 1];
        g[base + i * stride] = s;
      }
    }
  });
}

}  // namespace

Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r) {
  const auto [lo_it, hi_it] = std::minmax_element(edge.begin(), edge.end());
  const double e0 = *lo_it, delta = *hi_it - *lo_it;
  const int gh = static_cast<int>(std::floor((rows - 1) / sigma_s)) + 1 + 2 * kPadding;
  const int gw = static_cast<int>(std::floor((cols - 1) / sigma_s)) + 1 + 2 * kPadding;
  const int gd = static_cast<int>(std::floor(delta / sigma_r)) + 1 + 2 * kPadding;
  const std::size_t cells = static_cast<std::size_t>(gh) * gw * gd;
  const auto cell = [&](int y, int x, int z) { return (static_cast<std::size_t>(y) * gw + x) * gd + z; };
  std::vector<double> value(cells, 0.0), weight(cells, 0.0);
  // Splat in MATLAB's column-major pixel order (it fixes the summation order).
  for (int x = 0; x < cols; ++x) {
    for (int y = 0; y < rows; ++y) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const std::size_t c = cell(static_cast<int>(matlab_round(y / sigma_s)) + kPadding,
                                 static_cast<int>(matlab_round(x / sigma_s)) + kPadding,
                                 static_cast<int>(matlab_round((edge[i] - e0) / sigma_r)) + kPadding);
      value[c] += data[i];
      weight[c] += 1.0;
    }
  }
  for (int axis = 0; axis < 3; ++axis) {
    blur_axis(value, gh, gw, gd, axis);
    blur_axis(weight, gh, gw, gd, axis);
  }
  // Normalise before interpolating; empty cells hold 0.
  for (std::size_t c = 0; c < cells; ++c) value[c] = weight[c] == 0 ? 0.0 : value[c] / weight[c];
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
            v += w * value[cell(y0 + dy, x0 + dx, z0 + dz)];
          }
        }
      }
      out[i] = std::isnan(v) ? data[i] : v;
    }
  });
  return out;
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
  tbb::parallel_for(0, static_cast<int>(source.size()), [&](int c) {
    for (int t = 0; t < params.iterations; ++t) {
      guide[c] = bilateral_grid_filter(source[c], guide[c], rows, cols, params.sigma_s, params.sigma_r);
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
