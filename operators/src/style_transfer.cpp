#include "opforge/operators/style_transfer.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/numeric.hpp"
#include "opforge/operators/local_laplacian.hpp"

namespace opforge {
namespace {

constexpr int kValueBins = 256;
constexpr int kModelBins = 65536;

// Normalised cumulative histogram of `values` on [lo, hi] with `bins` bins.
std::vector<double> cumulative_histogram(const Plane& values, double lo, double hi, int bins) {
  std::vector<double> cdf(static_cast<std::size_t>(bins), 0.0);
  const double scale = hi > lo ? bins / (hi - lo) : 0.0;
  for (double v : values) {
    const int b = clamped_index((v - lo) * scale, bins);
    cdf[static_cast<std::size_t>(b)] += 1;
  }
  double total = 0;
  for (double& c : cdf) {
    total += c;
    c = total;
  }
  for (double& c : cdf) c /= total;
  return cdf;
}

// The matching function, tabulated per input bin: the model quantile at the
// middle of the bin's probability mass (the bin centre of the first model bin
// whose cdf reaches it).
std::vector<double> matching_table(const Plane& values, const Plane& model, double lo, double hi) {
  const std::vector<double> cdf_v = cumulative_histogram(values, lo, hi, kValueBins);
  const std::vector<double> cdf_m = cumulative_histogram(model, lo, hi, kModelBins);
  std::vector<double> table(kValueBins);
  for (int b = 0; b < kValueBins; ++b) {
    const double p = 0.5 * ((b > 0 ? cdf_v[b - 1] : 0.0) + cdf_v[b]);
    const auto k = std::lower_bound(cdf_m.begin(), cdf_m.end(), p) - cdf_m.begin();
    const double bin = static_cast<double>(std::min<std::ptrdiff_t>(k, kModelBins - 1));
    table[b] = lo + (hi - lo) * (bin + 0.5) / kModelBins;
  }
  return table;
}

Plane gradient_magnitude(const Plane& img, int rows, int cols) {
  Plane out(img.size());
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * cols + x;
      const double gx = x + 1 < cols ? img[i + 1] - img[i] : 0.0;
      const double gy = y + 1 < rows ? img[i + cols] - img[i] : 0.0;
      out[i] = std::sqrt(gx * gx + gy * gy);
    }
  }
  return out;
}

double max_of(const Plane& p) { return *std::max_element(p.begin(), p.end()); }

// r(d) = sign(d)·f(|d|) from the gradient-magnitude matching, as a 256-entry
// table over |d| ∈ [0, 1] (llf_discrete.m) interpolated linearly.
std::vector<double> gradient_remap_table(const Plane& img, const Plane& model, int rows, int cols, int model_rows,
                                         int model_cols) {
  const Plane gi = gradient_magnitude(img, rows, cols);
  const Plane gm = gradient_magnitude(model, model_rows, model_cols);
  const double top = std::max({max_of(gi), max_of(gm), 1e-12});
  const std::vector<double> match = matching_table(gi, gm, 0.0, top);
  const double bin_width = top / kValueBins;
  // f at bin centres, f(0) = 0, and slope 1 past the last centre.
  const auto f = [&](double a) {
    const double t = a / bin_width - 0.5;
    if (t <= 0) return match[0] * std::max(a, 0.0) / (0.5 * bin_width);
    if (t >= kValueBins - 1) return match[kValueBins - 1] + (a - (kValueBins - 0.5) * bin_width);
    const int b = static_cast<int>(t);
    return match[b] + (match[b + 1] - match[b]) * (t - b);
  };
  std::vector<double> table(256);
  for (int k = 0; k < 256; ++k) table[k] = f(k / 255.0);
  return table;
}

double table_remap(const std::vector<double>& table, double d) {
  const double a = std::min(std::abs(d), 1.0) * 255.0;
  const int k = std::min(static_cast<int>(a), 254);
  const double v = table[k] + (table[k + 1] - table[k]) * (a - k);
  return d < 0 ? -v : v;
}

using Table = ParamTable<StyleTransferParams>;
const Table& params_table() {
  static const Table table{
      "style_transfer",
      {
          Table::integer(&StyleTransferParams::iterations, "iterations", IntegerRange(1, 10),
                         "gradient-histogram transfers (Fan et al.: 3)"),
          Table::integer(&StyleTransferParams::samples, "samples", IntegerRange(2, 256),
                         "LLF reference levels N (Fan et al.: 20)"),
      }};
  return table;
}

// The registry's call: the parameters and the model image's file.
struct StyleTransferCall : StyleTransferParams {
  std::string style;
};

using CallTable = ParamTable<StyleTransferCall>;
const CallTable& call_table() {
  static const CallTable table = [] {
    std::vector<CallTable::Field> fields = {
        CallTable::required_text(&StyleTransferCall::style, "style", "the model image's path (PNG, JPEG or .npy)",
                                 "the model M whose intensity and gradient histograms are transferred (required)",
                                 file_problem)};
    for (auto& f : CallTable::fields_of(params_table())) fields.push_back(std::move(f));
    return CallTable("style_transfer", std::move(fields));
  }();
  return table;
}

Plane grey_of(const Image& img) {
  const std::vector<Plane> p = to_double_planes(img);
  return p.size() == 3 ? gray_plane(p) : p[0];
}

}  // namespace

Plane match_histogram(const Plane& values, const Plane& model, double lo, double hi) {
  if (values.empty() || model.empty()) throw Error("match_histogram: empty input");
  const std::vector<double> table = matching_table(values, model, lo, hi);
  const double scale = hi > lo ? kValueBins / (hi - lo) : 0.0;
  Plane out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    out[i] = table[static_cast<std::size_t>(clamped_index((values[i] - lo) * scale, kValueBins))];
  }
  return out;
}

namespace {

Image transfer_valid(const Image& input, const Image& style, const StyleTransferParams& params) {
  require_image(style, "style_transfer (style image)");
  const int rows = input.rows, cols = input.cols;
  const Plane model = grey_of(style);
  Plane img = match_histogram(grey_of(input), model, 0.0, 1.0);
  for (int it = 0; it < params.iterations; ++it) {
    const std::vector<double> table = gradient_remap_table(img, model, rows, cols, style.rows, style.cols);
    img = local_laplacian_remap_gray(img, rows, cols, [&table](double d) { return table_remap(table, d); }, params.samples);
    const auto [lo, hi] = std::minmax_element(img.begin(), img.end());
    const double low = *lo, range = *hi - *lo;
    // A flat result (a constant input) has no range to stretch: stretching
    // its rounding noise (the float32 LLF's, ~1e-7) would invent an image.
    if (range > 1e-5) {
      for (double& v : img) v = (v - low) / range;
    }
    img = match_histogram(img, model, 0.0, 1.0);
  }
  const Image grey = from_double_planes({img}, rows, cols);
  if (input.channels() == 1) return grey;
  Image out;
  cv::Mat planes[] = {grey, grey, grey};
  cv::merge(planes, 3, out);
  return out;
}

}  // namespace

Image style_transfer(const Image& input, const Image& style, const StyleTransferParams& params) {
  require_image(input, "style_transfer");
  params_table().validate(params);
  return transfer_valid(input, style, params);
}

OperatorEntry style_transfer_entry() {
  return make_entry<StyleTransferCall>({
      .summary = "photographic style transfer: intensity and gradient histograms of a model image, by local Laplacian "
                 "filtering (grey result)",
      .citation = "M. Aubry, S. Paris, S. W. Hasinoff, J. Kautz, F. Durand, \"Fast Local Laplacian Filters: Theory and "
                  "Applications\", ACM TOG 33(5), 2014 (style_transfer.m, llf_discrete.m); the \"Photographic style\" "
                  "operator of Q. Chen et al., ICCV 2017 and \"Stylization\" of Q. Fan et al., ECCV 2018",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = &call_table(),
      // LLF pyramids and histograms: 106 MB measured at 1 MP RGB (with a 1 MP
      // model image, which the pixel limit bounds when it is read).
      .peak_bytes = [](const Image& img, const StyleTransferCall&) { return pixel_count(img) * 160.0; },
      .run = [](const Image& img, const StyleTransferCall& p, const RunContext&) {
        return transfer_valid(img, read_image(p.style), p);
      },
  });
}

}  // namespace opforge
