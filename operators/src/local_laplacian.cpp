// Fast local Laplacian filtering (Aubry et al. 2014), OPERATORS.md §6.

#include "opforge/operators/local_laplacian.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>

#include "entries.hpp"
#include "opforge/core/error.hpp"

namespace opforge {
namespace {

constexpr std::array<double, 5> kTaps = {0.05, 0.25, 0.4, 0.25, 0.05};
constexpr double kEps = 0x1.0p-52;

struct Level {
  int rows = 0, cols = 0;
  Plane v;
  double& at(int y, int x) { return v[static_cast<std::size_t>(y) * cols + x]; }
  double at(int y, int x) const { return v[static_cast<std::size_t>(y) * cols + x]; }
};
using Pyramid = std::vector<Level>;

// Σ of the taps that land inside [0, n) around position p (the normaliser
// k⋆1 of one axis, zero padding).
double inside_weight(int p, int n) {
  double s = 0;
  for (int t = -2; t <= 2; ++t) {
    if (p + t >= 0 && p + t < n) s += kTaps[t + 2];
  }
  return s;
}

// Weight of the taps of an up step that hit even (occupied) positions inside
// [0, n) around position p.
double occupied_weight(int p, int n) {
  double s = 0;
  for (int t = -2; t <= 2; ++t) {
    const int q = p + t;
    if (q >= 0 && q < n && q % 2 == 0) s += kTaps[t + 2];
  }
  return s;
}

// The plain pyramid steps, tap by tap with every bounds test (the reference
// the fast ones are tested against).

// down(J) = (k⋆J)/(k⋆1) sampled at even rows and columns.
Level down_plain(const Level& in) {
  Level out{(in.rows + 1) / 2, (in.cols + 1) / 2, {}};
  out.v.resize(static_cast<std::size_t>(out.rows) * out.cols);
  Level h{in.rows, out.cols, Plane(static_cast<std::size_t>(in.rows) * out.cols)};
  tbb::parallel_for(0, in.rows, [&](int y) {
    for (int x = 0; x < out.cols; ++x) {
      double s = 0;
      for (int t = -2; t <= 2; ++t) {
        const int xx = 2 * x + t;
        if (xx >= 0 && xx < in.cols) s += kTaps[t + 2] * in.at(y, xx);
      }
      h.at(y, x) = s;
    }
  });
  tbb::parallel_for(0, out.rows, [&](int y) {
    const double wy = inside_weight(2 * y, in.rows);
    for (int x = 0; x < out.cols; ++x) {
      double s = 0;
      for (int t = -2; t <= 2; ++t) {
        const int yy = 2 * y + t;
        if (yy >= 0 && yy < in.rows) s += kTaps[t + 2] * h.at(yy, x);
      }
      out.at(y, x) = s / (wy * inside_weight(2 * x, in.cols));
    }
  });
  return out;
}

// up(J → rows×cols) = (k⋆Z_J)/(k⋆Z₁): J on the even positions of a zero image.
Level up_plain(const Level& in, int rows, int cols) {
  Level h{in.rows, cols, Plane(static_cast<std::size_t>(in.rows) * cols)};
  tbb::parallel_for(0, in.rows, [&](int y) {
    for (int x = 0; x < cols; ++x) {
      double s = 0;
      for (int t = -2; t <= 2; ++t) {
        const int q = x + t;
        if (q >= 0 && q < cols && q % 2 == 0) s += kTaps[t + 2] * in.at(y, q / 2);
      }
      h.at(y, x) = s;
    }
  });
  Level out{rows, cols, Plane(static_cast<std::size_t>(rows) * cols)};
  tbb::parallel_for(0, rows, [&](int y) {
    const double wy = occupied_weight(y, rows);
    for (int x = 0; x < cols; ++x) {
      double s = 0;
      for (int t = -2; t <= 2; ++t) {
        const int q = y + t;
        if (q >= 0 && q < rows && q % 2 == 0) s += kTaps[t + 2] * h.at(q / 2, x);
      }
      out.at(y, x) = s / (wy * occupied_weight(x, cols));
    }
  });
  return out;
}

// The fast pyramid steps: the same sums in the same order as the plain ones
// (so bit-identical results), with the bounds tests only at the borders and
// the normalisers computed once per column.
Level down_fast(const Level& in) {
  const int rows = in.rows, cols = in.cols;
  Level out{(rows + 1) / 2, (cols + 1) / 2, {}};
  out.v.resize(static_cast<std::size_t>(out.rows) * out.cols);
  Level h{rows, out.cols, Plane(static_cast<std::size_t>(rows) * out.cols)};
  tbb::parallel_for(0, rows, [&](int y) {
    const double* row = &in.v[static_cast<std::size_t>(y) * cols];
    double* hr = &h.v[static_cast<std::size_t>(y) * out.cols];
    for (int x = 0; x < out.cols; ++x) {
      const int c = 2 * x;
      double s = 0;
      if (c >= 2 && c + 2 < cols) {
        s += kTaps[0] * row[c - 2];
        s += kTaps[1] * row[c - 1];
        s += kTaps[2] * row[c];
        s += kTaps[3] * row[c + 1];
        s += kTaps[4] * row[c + 2];
      } else {
        for (int t = -2; t <= 2; ++t) {
          if (c + t >= 0 && c + t < cols) s += kTaps[t + 2] * row[c + t];
        }
      }
      hr[x] = s;
    }
  });
  std::vector<double> wx(out.cols);
  for (int x = 0; x < out.cols; ++x) wx[x] = inside_weight(2 * x, cols);
  tbb::parallel_for(0, out.rows, [&](int y) {
    const int c = 2 * y;
    const double wy = inside_weight(c, rows);
    double* o = &out.v[static_cast<std::size_t>(y) * out.cols];
    const auto hrow = [&](int yy) { return &h.v[static_cast<std::size_t>(yy) * out.cols]; };
    if (c >= 2 && c + 2 < rows) {
      const double *r0 = hrow(c - 2), *r1 = hrow(c - 1), *r2 = hrow(c), *r3 = hrow(c + 1), *r4 = hrow(c + 2);
      for (int x = 0; x < out.cols; ++x) {
        double s = 0;
        s += kTaps[0] * r0[x];
        s += kTaps[1] * r1[x];
        s += kTaps[2] * r2[x];
        s += kTaps[3] * r3[x];
        s += kTaps[4] * r4[x];
        o[x] = s / (wy * wx[x]);
      }
    } else {
      for (int x = 0; x < out.cols; ++x) {
        double s = 0;
        for (int t = -2; t <= 2; ++t) {
          if (c + t >= 0 && c + t < rows) s += kTaps[t + 2] * hrow(c + t)[x];
        }
        o[x] = s / (wy * wx[x]);
      }
    }
  });
  return out;
}

Level up_fast(const Level& in, int rows, int cols) {
  Level h{in.rows, cols, Plane(static_cast<std::size_t>(in.rows) * cols)};
  tbb::parallel_for(0, in.rows, [&](int y) {
    const double* row = &in.v[static_cast<std::size_t>(y) * in.cols];
    double* hr = &h.v[static_cast<std::size_t>(y) * cols];
    for (int x = 0; x < cols; ++x) {
      double s = 0;
      if (x >= 2 && x + 2 < cols) {
        if (x % 2 == 0) {  // taps −2, 0, +2 land on even positions
          s += kTaps[0] * row[x / 2 - 1];
          s += kTaps[2] * row[x / 2];
          s += kTaps[4] * row[x / 2 + 1];
        } else {  // taps −1, +1
          s += kTaps[1] * row[(x - 1) / 2];
          s += kTaps[3] * row[(x + 1) / 2];
        }
      } else {
        for (int t = -2; t <= 2; ++t) {
          const int q = x + t;
          if (q >= 0 && q < cols && q % 2 == 0) s += kTaps[t + 2] * row[q / 2];
        }
      }
      hr[x] = s;
    }
  });
  std::vector<double> wx(cols);
  for (int x = 0; x < cols; ++x) wx[x] = occupied_weight(x, cols);
  Level out{rows, cols, Plane(static_cast<std::size_t>(rows) * cols)};
  tbb::parallel_for(0, rows, [&](int y) {
    const double wy = occupied_weight(y, rows);
    double* o = &out.v[static_cast<std::size_t>(y) * cols];
    const auto hrow = [&](int q) { return &h.v[static_cast<std::size_t>(q / 2) * cols]; };
    if (y >= 2 && y + 2 < rows && y % 2 == 0) {
      const double *r0 = hrow(y - 2), *r2 = hrow(y), *r4 = hrow(y + 2);
      for (int x = 0; x < cols; ++x) {
        double s = 0;
        s += kTaps[0] * r0[x];
        s += kTaps[2] * r2[x];
        s += kTaps[4] * r4[x];
        o[x] = s / (wy * wx[x]);
      }
    } else if (y >= 2 && y + 2 < rows) {
      const double *r1 = hrow(y - 1), *r3 = hrow(y + 1);
      for (int x = 0; x < cols; ++x) {
        double s = 0;
        s += kTaps[1] * r1[x];
        s += kTaps[3] * r3[x];
        o[x] = s / (wy * wx[x]);
      }
    } else {
      for (int x = 0; x < cols; ++x) {
        double s = 0;
        for (int t = -2; t <= 2; ++t) {
          const int q = y + t;
          if (q >= 0 && q < rows && q % 2 == 0) s += kTaps[t + 2] * hrow(q)[x];
        }
        o[x] = s / (wy * wx[x]);
      }
    }
  });
  return out;
}

struct FastSteps {
  static Level down(const Level& in) { return down_fast(in); }
  static Level up(const Level& in, int rows, int cols) { return up_fast(in, rows, cols); }
};
struct PlainSteps {
  static Level down(const Level& in) { return down_plain(in); }
  static Level up(const Level& in, int rows, int cols) { return up_plain(in, rows, cols); }
};

template <class Steps>
Pyramid gaussian_pyramid(const Level& image, int levels) {
  Pyramid g{image};
  for (int l = 1; l < levels; ++l) g.push_back(Steps::down(g.back()));
  return g;
}

template <class Steps>
Pyramid laplacian_pyramid(const Level& image, int levels) {
  Pyramid g = gaussian_pyramid<Steps>(image, levels);
  for (int l = 0; l + 1 < levels; ++l) {
    const Level u = Steps::up(g[l + 1], g[l].rows, g[l].cols);
    for (std::size_t i = 0; i < g[l].v.size(); ++i) g[l].v[i] -= u.v[i];
  }
  return g;  // the top level stays the coarsest Gaussian level
}

template <class Steps>
Level reconstruct(const Pyramid& lap) {
  Level r = lap.back();
  for (int l = static_cast<int>(lap.size()) - 2; l >= 0; --l) {
    Level u = Steps::up(r, lap[l].rows, lap[l].cols);
    for (std::size_t i = 0; i < u.v.size(); ++i) u.v[i] = lap[l].v[i] + u.v[i];
    r = std::move(u);
  }
  return r;
}

double remap(double d, const LocalLaplacianParams& p) {
  switch (p.remap) {
    case LlfRemap::detail:
      return p.fact * d * std::exp(-d * d / (2.0 * p.sigma * p.sigma));
    case LlfRemap::toy:  // remapping_function.m: 0 at exactly |d| = 0.1
      if (std::abs(d) < 0.1) return 3.0 * d;
      if (d > 0.1) return d + 0.2;
      if (d < -0.1) return d - 0.2;
      return 0.0;
    case LlfRemap::paris: {
      const double a = std::abs(d), s = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
      if (a > p.sigma_r) return s * (p.beta * (a - p.sigma_r) + p.sigma_r);
      const double x = a / p.sigma_r;
      double f = std::pow(x, p.alpha);
      if (p.alpha < 1) {
        const double t = std::clamp((a - 0.01) / 0.01, 0.0, 1.0);
        const double tau = t * t * (t - 2) * (t - 2);
        f = tau * f + (1 - tau) * x;
      }
      return s * p.sigma_r * f;
    }
  }
  return 0.0;
}

const std::vector<ParamSpec>& llf_specs() {
  static const std::vector<ParamSpec> specs = {
      choice_param("remap", "detail", {"detail", "toy", "paris"},
                   "detail: Aubry's detail manipulation (llf.m); toy: the authors' remapping_function.m "
                   "(llf_general.m); paris: Paris et al. 2011's remapping"),
      real_param("fact", 5.0, -1.0, 10.0, false, false, SamplingScale::linear, "detail: gain of the detail layer"),
      real_param("sigma", 0.1, 0.0, 1.0, true, false, SamplingScale::linear, "detail: width of the detail range"),
      real_param("sigma_r", 0.1, 0.0, 1.0, true, false, SamplingScale::linear, "paris: detail/edge threshold"),
      real_param("alpha", 0.25, 0.0, 4.0, true, false, SamplingScale::log,
                 "paris: detail exponent (< 1 boosts detail, > 1 smooths)"),
      real_param("beta", 1.0, 0.0, 2.0, false, false, SamplingScale::linear, "paris: edge slope (< 1 compresses range)"),
      integer_param("samples", 0, 0, 256, "reference levels N (2..256); 0 = 10 for detail, 20 for toy and paris"),
  };
  return specs;
}

LocalLaplacianParams validated(const LocalLaplacianParams& p) {
  ParamValues v;
  v.set("fact", p.fact);
  v.set("sigma", p.sigma);
  v.set("sigma_r", p.sigma_r);
  v.set("alpha", p.alpha);
  v.set("beta", p.beta);
  v.set("samples", static_cast<double>(p.samples));
  validate_params("local_laplacian", llf_specs(), v);
  if (p.samples == 1) throw Error("local_laplacian: parameter 'samples' = 1 is out of range; valid: 0 (auto) or 2..256");
  LocalLaplacianParams q = p;
  if (q.samples == 0) q.samples = p.remap == LlfRemap::detail ? 10 : 20;
  return q;
}

}  // namespace

namespace {

// Fills `out` with r(g − ρ_j) for reference level j; called for j = 0, 1, …
// in order.
using RemapLevel = std::function<void(int j, double ref, const Plane& gray, Plane& out)>;

RemapLevel pixelwise(const std::function<double(double)>& remap_fn) {
  return [remap_fn](int, double ref, const Plane& gray, Plane& out) {
    tbb::parallel_for(std::size_t{0}, gray.size(), [&](std::size_t i) { out[i] = remap_fn(gray[i] - ref); });
  };
}

// The detail remap fact·d·exp(−d²/2σ²), d = g − ρ_j, without an exponential
// per pixel and level: exp(−d²/2σ²) = exp(−g²/2σ²)·exp(g·ρ_j/σ²)·exp(−ρ_j²/2σ²),
// and the middle factor is stepped by exp(g·Δ/σ²) from one level to the next
// (ρ_j = jΔ). The product drifts by about one rounding per level (< 1e-13
// relative at N = 256). Every factor stays a normal double while 1/σ² ≤ 700;
// below σ ≈ 0.038 the plain per-pixel exponential is used.
RemapLevel detail_remap(const LocalLaplacianParams& p, int n) {
  const double inv_var = 1.0 / (p.sigma * p.sigma);
  if (inv_var > 700.0) return pixelwise([p](double d) { return remap(d, p); });
  struct State {
    Plane base, step, power;
  };
  auto state = std::make_shared<State>();
  const double delta = 1.0 / (n - 1);
  return [p, inv_var, delta, state](int j, double ref, const Plane& gray, Plane& out) {
    State& st = *state;
    if (j == 0) {
      st.base.resize(gray.size());
      st.step.resize(gray.size());
      st.power.assign(gray.size(), 1.0);
      tbb::parallel_for(std::size_t{0}, gray.size(), [&](std::size_t i) {
        st.base[i] = std::exp(-0.5 * gray[i] * gray[i] * inv_var);
        st.step[i] = std::exp(gray[i] * delta * inv_var);
      });
    }
    const double level = std::exp(-0.5 * ref * ref * inv_var);
    tbb::parallel_for(std::size_t{0}, gray.size(), [&](std::size_t i) {
      const double d = gray[i] - ref;
      out[i] = p.fact * d * (st.base[i] * st.power[i] * level);
      st.power[i] *= st.step[i];
    });
  };
}

// The fast LLF of llf.m / llf_general.m: N reference levels, each remapped
// image's Laplacian pyramid blended in with linear interpolation weights.
// `add_to_own_pyramid`: llf.m adds the result to g's own pyramid (detail);
// llf_general.m starts from zero.
template <class Steps>
Plane fast_llf(const Plane& gray, int rows, int cols, const RemapLevel& remap_level, int n, bool add_to_own_pyramid) {
  const int levels = static_cast<int>(std::ceil(std::log(std::min(rows, cols)) - std::log(2.0))) + 2;
  const Level g{rows, cols, gray};
  const Pyramid gauss = gaussian_pyramid<Steps>(g, levels);
  Pyramid out = add_to_own_pyramid ? laplacian_pyramid<Steps>(g, levels) : gauss;
  if (!add_to_own_pyramid) {
    for (auto& level : out) std::fill(level.v.begin(), level.v.end(), 0.0);
  }
  const double step = 1.0 / (n - 1);
  Level remapped{rows, cols, Plane(gray.size())};
  for (int j = 0; j < n; ++j) {
    const double ref = j + 1 == n ? 1.0 : j * step;  // linspace(0, 1, N)
    remap_level(j, ref, gray, remapped.v);
    const Pyramid t = laplacian_pyramid<Steps>(remapped, levels);
    for (int l = 0; l + 1 < levels; ++l) {
      const Plane& gl = gauss[l].v;
      Plane& ol = out[l].v;
      // Each coefficient accumulates over j in order: parallel over i is exact.
      tbb::parallel_for(std::size_t{0}, ol.size(), [&](std::size_t i) {
        const double distance = std::abs(gl[i] - ref);
        if (distance < step) ol[i] = ol[i] + t[l].v[i] * (1.0 - distance / step);
      });
    }
  }
  out.back() = gauss.back();
  return reconstruct<Steps>(out).v;
}

}  // namespace

Plane local_laplacian_gray(const Plane& gray, int rows, int cols, const LocalLaplacianParams& params) {
  const LocalLaplacianParams p = validated(params);
  const RemapLevel level = p.remap == LlfRemap::detail ? detail_remap(p, p.samples)
                                                      : pixelwise([&p](double d) { return remap(d, p); });
  return fast_llf<FastSteps>(gray, rows, cols, level, p.samples, p.remap == LlfRemap::detail);
}

namespace reference {

Plane local_laplacian_gray(const Plane& gray, int rows, int cols, const LocalLaplacianParams& params) {
  const LocalLaplacianParams p = validated(params);
  return fast_llf<PlainSteps>(gray, rows, cols, pixelwise([&p](double d) { return remap(d, p); }), p.samples,
                              p.remap == LlfRemap::detail);
}

}  // namespace reference

Plane local_laplacian_remap_gray(const Plane& gray, int rows, int cols, const std::function<double(double)>& remap_fn,
                                 int samples) {
  if (samples < 2 || samples > 256) {
    throw Error("local_laplacian: 'samples' = " + std::to_string(samples) + " is out of range; valid: 2..256");
  }
  if (rows < 1 || cols < 1 || gray.size() != static_cast<std::size_t>(rows) * cols) {
    throw Error("local_laplacian: the plane does not hold rows x cols values");
  }
  return fast_llf<FastSteps>(gray, rows, cols, pixelwise(remap_fn), samples, false);
}

Image local_laplacian(const Image& input, const LocalLaplacianParams& params) {
  require_image(input, "local_laplacian");
  validated(params);
  const int rows = input.rows, cols = input.cols;
  const std::vector<Plane> p = to_double_planes(input);
  const Plane gray = p.size() == 3 ? gray_plane(p) : p[0];
  const Plane f = local_laplacian_gray(gray, rows, cols, params);
  if (p.size() == 1) return from_double_planes({f}, rows, cols);
  std::vector<Plane> out(3, Plane(gray.size()));
  for (int c = 0; c < 3; ++c) {
    for (std::size_t i = 0; i < gray.size(); ++i) out[c][i] = f[i] * (p[c][i] / (gray[i] + kEps));
  }
  return from_double_planes(out, rows, cols);
}

OperatorEntry local_laplacian_entry() {
  return {
      .name = "local_laplacian",
      .summary = "fast local Laplacian filtering: detail manipulation, tone mapping, general remapping",
      .citation = "M. Aubry, S. Paris, S. W. Hasinoff, J. Kautz, F. Durand, \"Fast Local Laplacian Filters: Theory "
                  "and Applications\", ACM TOG 33(5), 2014; S. Paris, S. W. Hasinoff, J. Kautz, \"Local Laplacian "
                  "Filters\", ACM TOG 30(4), 2011; matches the authors' llf.m / llf_general.m",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = llf_specs(),
      // Pyramids: 85 B/px grey, 108 B/px RGB measured at 1 MP.
      .peak_bytes = [](const Image& img, const ParamValues&) { return pixel_count(img) * (111.0 + 17.0 * img.channels()); },
      .run = [](const Image& img, const ParamValues& p, const RunContext&) {
        const std::string& r = p.choice("remap");
        return local_laplacian(img, {.remap = r == "toy" ? LlfRemap::toy : r == "paris" ? LlfRemap::paris : LlfRemap::detail,
                                     .fact = p.number("fact"),
                                     .sigma = p.number("sigma"),
                                     .sigma_r = p.number("sigma_r"),
                                     .alpha = p.number("alpha"),
                                     .beta = p.number("beta"),
                                     .samples = static_cast<int>(p.integer("samples"))});
      },
  };
}

}  // namespace opforge
