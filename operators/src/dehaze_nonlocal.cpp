// Non-local dehazing (Berman, Treibitz, Avidan 2016), OPERATORS.md §8.

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <optional>
#include <sstream>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/numeric.hpp"
#include "opforge/operators/dehaze.hpp"
#include "opforge/operators/grid_solver.hpp"

namespace opforge {
namespace {

constexpr int kGrid = 16;             // cells per axis of the nearest-direction grid
constexpr double kGridExtent = 1.05;  // the grid spans [−1.05, 1.05]³
constexpr double kSmallNumber = 1e-5; // wls_optimization.m's small_num

double squared_distance(const Direction& a, const Direction& b) {
  const double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return dx * dx + dy * dy + dz * dz;
}

// "r,g,b" with each in (0, 1], or nothing.
std::optional<std::array<double, 3>> parse_airlight(const std::string& text) {
  std::array<double, 3> a{};
  std::stringstream in(text);
  std::string item;
  int k = 0;
  while (std::getline(in, item, ',')) {
    double v = 0;
    if (k >= 3 || !parse_number(item, v) || !(v > 0 && v <= 1)) return std::nullopt;
    a[k++] = v;
  }
  if (k != 3 || text.back() == ',') return std::nullopt;
  return a;
}

using Airlight = std::optional<std::array<double, 3>>;
const TextForm<Airlight> kAirlightText{
    .format = "auto | r,g,b with each in (0, 1]",
    .parse = [](const std::string& text, Airlight& value) {
      if (text == "auto") {
        value = std::nullopt;
        return std::string();
      }
      value = parse_airlight(text);
      return value ? std::string() : std::string("not three numbers in (0, 1]");
    },
    .print = [](const Airlight& value) {
      return value ? format_value((*value)[0]) + "," + format_value((*value)[1]) + "," + format_value((*value)[2])
                   : std::string("auto");
    },
};

const TextForm<std::filesystem::path> kDirectionsText{
    .format = "builtin | path to a table of 'x y z' rows",
    .parse = [](const std::string& text, std::filesystem::path& value) {
      value = text == "builtin" ? std::filesystem::path() : std::filesystem::path(text);
      return text == "builtin" ? std::string() : file_problem(text);
    },
    .print = [](const std::filesystem::path& value) { return value.empty() ? std::string("builtin") : value.string(); },
};

std::string stretch_problem(const NonLocalDehazeParams& p) {
  return p.stretch_low < p.stretch_high ? "" : "stretch_low must be below stretch_high; valid: 0 <= low < high <= 1";
}

using Table = ParamTable<NonLocalDehazeParams>;
const Table& params_table() {
  using P = NonLocalDehazeParams;
  static const Table table{
      "dehaze_nonlocal",
      {
          Table::text_as(&P::airlight, "airlight", kAirlightText,
                         "air-light colour; auto = the dark-channel estimate of dehaze_dark_channel (as the "
                         "references)"),
          Table::real(&P::gamma, "gamma", Interval::closed(0.5, 3), SamplingScale::linear,
                      "radiometric correction I^gamma"),
          Table::real(&P::lambda, "lambda", Interval::open_closed(0, 10), SamplingScale::log,
                      "regularisation weight of the WLS step"),
          Table::real(&P::trans_min, "trans_min", Interval::closed(0.01, 0.5), SamplingScale::linear,
                      "transmission floor"),
          Table::real(&P::leave_haze, "leave_haze", Interval::closed(1, 1.2), SamplingScale::linear,
                      "haze left in: J = (I - (1 - leave_haze*t)*A) / t"),
          Table::integer(&P::min_cluster, "min_cluster", IntegerRange(1, 1000),
                         "haze-line size at which its pixels get full data confidence"),
          Table::real(&P::stretch_low, "stretch_low", Interval::closed_open(0, 1), SamplingScale::linear,
                      "lower percentile of the final contrast stretch"),
          Table::real(&P::stretch_high, "stretch_high", Interval::open_closed(0, 1), SamplingScale::linear,
                      "upper percentile of the final contrast stretch"),
          Table::text_as(&P::directions, "directions", kDirectionsText,
                         "haze-line directions: builtin = opforge's 1000-point Fibonacci lattice; a file (e.g. the "
                         "authors' TR1000.txt) reproduces their outputs exactly"),
      },
      stretch_problem};
  return table;
}

// The registry's call: the parameters and which image to write.
struct NonLocalDehazeCall : NonLocalDehazeParams {
  bool write_transmission = false;
};

using CallTable = ParamTable<NonLocalDehazeCall>;
const CallTable& call_table() {
  static const CallTable table = [] {
    std::vector<CallTable::Field> fields = CallTable::fields_of(params_table());
    fields.push_back(CallTable::choice(&NonLocalDehazeCall::write_transmission, "output",
                                       {{"radiance", false}, {"transmission", true}},
                                       "what to write: the dehazed image or the regularised transmission map"));
    return CallTable("dehaze_nonlocal", std::move(fields), [](const NonLocalDehazeCall& c) { return stretch_problem(c); });
  }();
  return table;
}

// The WLS factor and the haze-line planes: 898 MiB measured at 1 MP RGB.
double nld_peak_bytes(int rows, int cols) {
  return 1.3 * static_cast<double>(estimate_grid_cholesky_bytes(rows, cols)) + 300.0 * rows * cols;
}

// Octave stretchlim on one channel: sorted values at 1-based ranks
// ⌊low·n⌋+1 and ⌈high·n⌉.
std::pair<double, double> stretch_limits(std::vector<double> v, double low, double high) {
  std::sort(v.begin(), v.end());
  const double n = static_cast<double>(v.size());
  const auto rank = [&](double r) {
    return v[static_cast<std::size_t>(std::clamp(r, 1.0, n)) - 1];
  };
  double lo = std::clamp(rank(std::floor(low * n) + 1), 0.0, 1.0);
  double hi = std::clamp(rank(std::ceil(high * n)), 0.0, 1.0);
  if (lo == hi) return {0.0, 1.0};
  return {lo, hi};
}

}  // namespace

std::vector<Direction> default_haze_line_directions(int count) {
  std::vector<Direction> d(count);
  const double golden_angle = std::numbers::pi * (3.0 - std::sqrt(5.0));
  for (int i = 0; i < count; ++i) {
    const double z = 1.0 - (2.0 * i + 1.0) / count;
    const double r = std::sqrt(1.0 - z * z);
    const double phi = golden_angle * i;
    d[i] = {r * std::cos(phi), r * std::sin(phi), z};
  }
  return d;
}

std::vector<Direction> read_direction_table(const std::filesystem::path& path) {
  // The authors' table has 1000 rows (~60 KB); 16 MiB holds ~500 000.
  const std::vector<std::uint8_t> bytes = read_file(path, false, 16u << 20);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<Direction> d;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::istringstream row(line);
    Direction v{};
    std::string rest;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!(row >> v[0] >> v[1] >> v[2]) || (row >> rest) || !std::isfinite(v[0] + v[1] + v[2]) ||
        !(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] > 0)) {
      throw Error("dehaze_nonlocal: direction table '" + path.string() + "' line " + std::to_string(number) +
                  " is not 'x y z' (a non-zero direction)");
    }
    d.push_back(v);
  }
  if (d.empty()) throw Error("dehaze_nonlocal: direction table '" + path.string() + "' has no directions");
  return d;
}

NearestDirection::NearestDirection(std::vector<Direction> directions)
    : directions_(std::move(directions)), cells_(static_cast<std::size_t>(kGrid) * kGrid * kGrid) {
  const double step = 2.0 * kGridExtent / kGrid;
  for (int cx = 0; cx < kGrid; ++cx) {
    for (int cy = 0; cy < kGrid; ++cy) {
      for (int cz = 0; cz < kGrid; ++cz) {
        const Direction lo{-kGridExtent + cx * step, -kGridExtent + cy * step, -kGridExtent + cz * step};
        const Direction hi{lo[0] + step, lo[1] + step, lo[2] + step};
        // Queries are unit vectors: cells away from the unit shell stay empty
        // (and fall back to brute force should a query ever land there).
        double near2 = 0, far2 = 0;
        for (int k = 0; k < 3; ++k) {
          const double c = std::clamp(0.0, lo[k], hi[k]);
          near2 += c * c;
          far2 += std::max(lo[k] * lo[k], hi[k] * hi[k]);
        }
        if (near2 > 1.1 * 1.1 || far2 < 0.9 * 0.9) continue;
        // Every point q of the box has a direction within `bound` (the best
        // farthest-corner distance); the nearest to q is then within `bound`
        // of the box, so keeping those directions is exact.
        double bound = std::numeric_limits<double>::infinity();
        for (const auto& v : directions_) {
          double m = 0;
          for (int k = 0; k < 3; ++k) m += std::max((v[k] - lo[k]) * (v[k] - lo[k]), (v[k] - hi[k]) * (v[k] - hi[k]));
          bound = std::min(bound, m);
        }
        auto& cell = cells_[(static_cast<std::size_t>(cx) * kGrid + cy) * kGrid + cz];
        for (int i = 0; i < static_cast<int>(directions_.size()); ++i) {
          double m = 0;
          for (int k = 0; k < 3; ++k) {
            const double c = std::clamp(directions_[i][k], lo[k], hi[k]) - directions_[i][k];
            m += c * c;
          }
          if (m <= bound * (1 + 1e-9) + 1e-12) cell.push_back(i);  // slack for rounding
        }
      }
    }
  }
}

int NearestDirection::cell_of(double v) const {
  return clamped_index((v + kGridExtent) / (2.0 * kGridExtent / kGrid), kGrid);
}

int NearestDirection::nearest_brute_force(const Direction& u) const {
  int best = 0;
  double best_d = squared_distance(u, directions_[0]);
  for (int i = 1; i < static_cast<int>(directions_.size()); ++i) {
    const double d = squared_distance(u, directions_[i]);
    if (d < best_d) {  // strict: ties keep the lower index
      best_d = d;
      best = i;
    }
  }
  return best;
}

int NearestDirection::nearest(const Direction& u) const {
  if (!std::isfinite(u[0] + u[1] + u[2])) return 0;  // ρ = 0: the pixel is the air-light
  const auto& cell = cells_[(static_cast<std::size_t>(cell_of(u[0])) * kGrid + cell_of(u[1])) * kGrid + cell_of(u[2])];
  if (cell.empty()) return nearest_brute_force(u);
  int best = cell[0];
  double best_d = squared_distance(u, directions_[best]);
  for (std::size_t k = 1; k < cell.size(); ++k) {  // cell lists are in index order
    const double d = squared_distance(u, directions_[cell[k]]);
    if (d < best_d) {
      best_d = d;
      best = cell[k];
    }
  }
  return best;
}

namespace {

NonLocalDehazeResult dehaze_valid(const Image& input, const NonLocalDehazeParams& p) {
  require_image_shape(input, "dehaze_nonlocal");
  if (input.channels() != 3) {
    throw Error("dehaze_nonlocal: needs an RGB image, got " + std::to_string(input.channels()) + " channel(s)");
  }
  const int rows = input.rows, cols = input.cols;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  require_solver_memory("dehaze_nonlocal", rows, cols, static_cast<std::size_t>(nld_peak_bytes(rows, cols)));
  require_image(input, "dehaze_nonlocal");  // the values, once the size is known to fit
  const std::vector<Plane> img = to_double_planes(input);
  NonLocalDehazeResult result;
  result.airlight = p.airlight ? *p.airlight : estimate_airlight(img, rows, cols, 15, 0.001);
  const auto& a = result.airlight;
  for (double c : a) {
    if (!(c > 0 && c <= 1)) {
      throw Error(std::string("dehaze_nonlocal: the air-light ") + (p.airlight ? "given" : "estimated from the image") +
                  " is (" + format_value(a[0]) + ", " + format_value(a[1]) + ", " + format_value(a[2]) +
                  "); valid: each component in (0, 1]" + (p.airlight ? "" : " (give it with --param airlight=r,g,b)"));
    }
  }
  std::vector<Plane> corrected = img;
  if (p.gamma != 1.0) {
    for (auto& plane : corrected) {
      for (double& x : plane) x = std::pow(x, p.gamma);
    }
  }

  // Haze lines: direction of I − A, nearest table direction.
  const NearestDirection lines(p.directions.empty() ? default_haze_line_directions() : read_direction_table(p.directions));
  Plane radius(n);
  std::vector<int> line(n);
  tbb::parallel_for(0, rows, [&](int y) {
    for (int x = 0; x < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const Direction d{corrected[0][i] - a[0], corrected[1][i] - a[1], corrected[2][i] - a[2]};
      radius[i] = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
      line[i] = lines.nearest({d[0] / radius[i], d[1] / radius[i], d[2] / radius[i]});
    }
  });

  // Per-line statistics, accumulated in MATLAB's column-major order.
  const std::size_t count = lines.size();
  std::vector<double> max_radius(count, 0.0), sum(count, 0.0), squares(count, 0.0);
  std::vector<int> members(count, 0);
  for (int x = 0; x < cols; ++x) {
    for (int y = 0; y < rows; ++y) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const int h = line[i];
      max_radius[h] = members[h] == 0 ? radius[i] : std::max(max_radius[h], radius[i]);
      sum[h] += radius[i];
      ++members[h];
    }
  }
  for (int x = 0; x < cols; ++x) {
    for (int y = 0; y < rows; ++y) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const double d = radius[i] - sum[line[i]] / members[line[i]];
      squares[line[i]] += d * d;
    }
  }
  std::vector<double> spread(count, 0.0);
  double max_spread = 0;
  for (std::size_t h = 0; h < count; ++h) {
    spread[h] = members[h] > 1 ? std::sqrt(squares[h] / (members[h] - 1)) : 0.0;
    max_spread = std::max(max_spread, spread[h]);
  }

  // Initial transmission and data confidence.
  Plane t_init(n), weight(n);
  for (std::size_t i = 0; i < n; ++i) {
    const int h = line[i];
    double t = radius[i] / max_radius[h];
    t = std::isnan(t) ? p.trans_min : std::min(std::max(t, p.trans_min), 1.0);
    const double lower = 1.0 - std::min(std::min(corrected[0][i] / a[0], corrected[1][i] / a[1]), corrected[2][i] / a[2]);
    t_init[i] = std::max(t, lower);
    const double ratio = max_spread > 0 ? spread[h] / max_spread : std::numeric_limits<double>::quiet_NaN();
    const double reliability = std::min(1.0, 3.0 * std::fmax(0.001, ratio - 0.1));
    weight[i] = std::min(1.0, static_cast<double>(members[h]) / p.min_cluster) * reliability;
  }

  // Regularisation (wls_optimization.m): normalise the weights, anchor the
  // top row, edge weights from the grey image, solve (diag(w) + L) t = w⊙t̃.
  const double w_min = *std::min_element(weight.begin(), weight.end());
  for (double& w : weight) w -= w_min;
  const double w_max = *std::max_element(weight.begin(), weight.end());
  for (double& w : weight) w = w / (w_max + kSmallNumber);
  for (int x = 0; x < cols; ++x) {
    if (weight[x] < 0.6) {
      double column_min = t_init[x];
      for (int y = 1; y < rows; ++y) column_min = std::min(column_min, t_init[static_cast<std::size_t>(y) * cols + x]);
      weight[x] = 0.8;
      t_init[x] = column_min;
    }
  }
  const Plane gray = gray_plane(img);
  GridWeights edges{rows, cols, Plane(n, 0.0), Plane(n, 0.0)};
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      if (x + 1 < cols) {
        const double d = gray[i + 1] - gray[i];
        edges.horizontal[i] = p.lambda / (d * d + kSmallNumber);
      }
      if (y + 1 < rows) {
        const double d = gray[i + cols] - gray[i];
        edges.vertical[i] = p.lambda / (d * d + kSmallNumber);
      }
    }
  }
  Plane rhs(n), t(n);
  for (std::size_t i = 0; i < n; ++i) rhs[i] = weight[i] * t_init[i];
  const double* rhs_ptr = rhs.data();
  double* t_ptr = t.data();
  cached_grid_cholesky(rows, cols)->solve(edges, weight, {&rhs_ptr, 1}, {&t_ptr, 1});

  // Radiance, clip, inverse gamma, then adjust.m's contrast stretch.
  std::vector<Plane> j(3, Plane(n));
  for (int c = 0; c < 3; ++c) {
    for (std::size_t i = 0; i < n; ++i) {
      double value = (corrected[c][i] - (1.0 - p.leave_haze * t[i]) * a[c]) / std::max(t[i], p.trans_min);
      value = std::clamp(value, 0.0, 1.0);
      j[c][i] = p.gamma != 1.0 ? std::pow(value, 1.0 / p.gamma) : value;
    }
  }
  double j_min = std::numeric_limits<double>::infinity();
  for (const auto& plane : j) j_min = std::min(j_min, *std::min_element(plane.begin(), plane.end()));
  double j_max = -std::numeric_limits<double>::infinity();
  for (auto& plane : j) {
    for (double& value : plane) value -= j_min;
    j_max = std::max(j_max, *std::max_element(plane.begin(), plane.end()));
  }
  std::array<double, 3> lo{}, hi{};
  for (int c = 0; c < 3; ++c) {
    for (double& value : j[c]) value /= j_max;
    std::tie(lo[c], hi[c]) = stretch_limits(j[c], p.stretch_low, p.stretch_high);
  }
  for (double& h : hi) h = std::max(h, 0.2);
  const double hi_mean = (hi[0] + hi[1] + hi[2]) / 3.0, lo_mean = (lo[0] + lo[1] + lo[2]) / 3.0;
  for (int c = 0; c < 3; ++c) {
    hi[c] = 0.2 * hi[c] + 0.8 * std::max(hi[c], hi_mean);
    lo[c] = 0.2 * lo[c] + 0.8 * std::min(lo[c], lo_mean);
  }
  for (int c = 0; c < 3; ++c) {
    for (double& value : j[c]) {
      const double s = std::clamp((value - lo[c]) / (hi[c] - lo[c]), 0.0, 1.0);
      value = std::floor(255.0 * s + 0.5) / 255.0;  // im2uint8
    }
  }
  result.radiance = from_double_planes(j, rows, cols);
  result.transmission = from_double_planes({t}, rows, cols);
  return result;
}

}  // namespace

NonLocalDehazeResult dehaze_nonlocal(const Image& input, const NonLocalDehazeParams& params) {
  params_table().validate(params);
  return dehaze_valid(input, params);
}

OperatorEntry dehaze_nonlocal_entry() {
  return make_entry<NonLocalDehazeCall>({
      .summary = "non-local dehazing by haze lines, with WLS-regularised transmission",
      .citation = "D. Berman, T. Treibitz, S. Avidan, \"Non-Local Image Dehazing\", CVPR 2016; follows the authors' "
                  "non_local_dehazing.m / wls_optimization.m / adjust.m (default haze-line directions: opforge's "
                  "Fibonacci lattice, not the authors' TR1000 table)",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = &call_table(),
      .peak_bytes = [](const Image& img, const NonLocalDehazeCall&) { return nld_peak_bytes(img.rows, img.cols); },
      .run = [](const Image& img, const NonLocalDehazeCall& p, const RunContext&) {
        NonLocalDehazeResult r = dehaze_valid(img, p);
        return p.write_transmission ? r.transmission : r.radiance;
      },
  });
}

}  // namespace opforge
