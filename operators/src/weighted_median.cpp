// Joint weighted median (Zhang, Xu, Jia 2014), OPERATORS.md §5.

#include "opforge/operators/weighted_median.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>
#include <tbb/parallel_sort.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <opencv2/core.hpp>

#include "opforge/operators/registry.hpp"
#include "opforge/core/error.hpp"

namespace opforge {
namespace {

using Table = ParamTable<WeightedMedianParams>;
const Table& params_table() {
  static const Table table{
      "weighted_median",
      {
          Table::real(&WeightedMedianParams::radius, "radius", Interval::closed(0, 100), SamplingScale::linear,
                      "window radius, rounded as the authors' gateway does: (int)(r + 0.5)"),
          Table::real(&WeightedMedianParams::sigma, "sigma", Interval::open_closed(0, 1e4), SamplingScale::log,
                      "weight sigma in 0-255 units"),
          Table::choice(&WeightedMedianParams::guide, "guide",
                        {{"self_double", WmfGuide::self_double}, {"self_u8", WmfGuide::self_u8}},
                        "self_double: the papers' literal call (double guide: rescaled, sigma x 255/range); self_u8: "
                        "the 8-bit image as guide"),
          Table::integer(&WeightedMedianParams::iterations, "iterations", IntegerRange(1, 10),
                         "repeats with the same feature map"),
          Table::integer(&WeightedMedianParams::levels_input, "levels_input", IntegerRange(2, 4096),
                         "nI: quantisation levels of the filtered values"),
          Table::integer(&WeightedMedianParams::levels_feature, "levels_feature", IntegerRange(2, 4096),
                         "nF: feature levels (colour clusters of a 3-channel guide)"),
      }};
  return table;
}

// Groups of one channel's sorted values (the authors' quantisation to nI
// levels): value → group index, and each group's lower-median member.
struct Quantised {
  std::vector<std::uint16_t> index;  // per pixel (levels_input ≤ 4096)
  std::vector<double> value;         // per group
};

// A filtered channel as the group index of each pixel's median.
using Levels = std::vector<std::uint16_t>;

// Groups depend only on the distinct values: count them on those.
int count_groups(const std::vector<double>& distinct, double e) {
  int groups = 0;
  double first = 0;
  for (std::size_t i = 0; i < distinct.size(); ++i) {
    if (i == 0 || distinct[i] > first + e) {
      ++groups;
      first = distinct[i];
    }
  }
  return groups;
}

// The 8-bit codes of a plane whose every value is exactly k/255 in double
// (every 8-bit source), or nothing: such a plane is sorted by counting.
std::optional<std::vector<std::uint8_t>> exact_codes(const Plane& v) {
  static const auto value_of = [] {
    std::array<double, 256> t{};
    for (int k = 0; k < 256; ++k) t[k] = lattice_value(k);
    return t;
  }();
  std::vector<std::uint8_t> codes(v.size());
  std::atomic<bool> exact{true};
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, v.size(), 1 << 16), [&](const tbb::blocked_range<std::size_t>& r) {
    unsigned off = 0;
    for (std::size_t i = r.begin(); i < r.end(); ++i) {
      const double c = v[i] > 0.0 ? (v[i] < 1.0 ? v[i] : 1.0) : 0.0;  // NaN → 0
      const int k = static_cast<int>(c * 255.0 + 0.5);
      codes[i] = static_cast<std::uint8_t>(k);
      off |= value_of[k] != v[i] ? 1u : 0u;
    }
    if (off) exact.store(false, std::memory_order_relaxed);
  });
  if (!exact) return std::nullopt;
  return codes;
}

// How many values of a channel have each 8-bit code.
using CodeHistogram = std::array<std::size_t, 256>;

// A channel to quantise: its 8-bit codes (every value exactly k/255), or its
// values.
struct ChannelValues {
  const std::vector<std::uint8_t>* codes = nullptr;
  const CodeHistogram* histogram = nullptr;  // of the codes, when known
  const Plane* values = nullptr;
  std::size_t size() const { return codes ? codes->size() : values->size(); }
};

Quantised quantise(const ChannelValues& channel, int levels) {
  // The distinct values in ascending order and where each starts in the
  // sorted sequence of all values (8-bit images have ≤ 256).
  std::vector<double> distinct;
  std::vector<std::size_t> first_index;
  const std::vector<std::uint8_t>* codes = channel.codes;
  std::vector<int> distinct_of_code(256, -1);
  if (codes) {
    CodeHistogram count{};
    if (channel.histogram) {
      count = *channel.histogram;
    } else {
      for (std::uint8_t k : *codes) ++count[k];
    }
    std::size_t at = 0;
    for (int k = 0; k < 256; ++k) {
      if (count[k] == 0) continue;
      distinct_of_code[k] = static_cast<int>(distinct.size());
      distinct.push_back(lattice_value(k));
      first_index.push_back(at);
      at += count[k];
    }
  } else {
    std::vector<double> sorted(*channel.values);
    tbb::parallel_sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (i == 0 || sorted[i] != sorted[i - 1]) {
        distinct.push_back(sorted[i]);
        first_index.push_back(i);
      }
    }
  }
  first_index.push_back(channel.size());
  // The value at position p of the sorted sequence.
  const auto sorted_at = [&](std::size_t p) {
    return distinct[static_cast<std::size_t>(std::upper_bound(first_index.begin(), first_index.end(), p) -
                                             first_index.begin()) - 1];
  };
  const double range = distinct.back() - distinct.front();
  double lo = 0, hi = 2.0 * range / levels;
  while (hi - lo >= 1e-5) {
    const double mid = 0.5 * (lo + hi);
    if (count_groups(distinct, mid) <= levels) hi = mid; else lo = mid;
  }
  const double e = count_groups(distinct, lo) <= levels ? lo : hi;
  // Greedy groups over the sorted values; representative = lower median.
  std::vector<double> starts, reps;
  std::vector<int> group_of_distinct(distinct.size());
  std::size_t begin = 0;  // in `distinct`
  for (std::size_t d = 1; d <= distinct.size(); ++d) {
    if (d == distinct.size() || distinct[d] > distinct[begin] + e) {
      const std::size_t a = first_index[begin], b = first_index[d];  // the group's pixels in sorted order
      for (std::size_t i = begin; i < d; ++i) group_of_distinct[i] = static_cast<int>(reps.size());
      starts.push_back(distinct[begin]);
      reps.push_back(sorted_at(a + (b - 1 - a) / 2));
      begin = d;
    }
  }
  Quantised q;
  q.value = reps;
  q.index.resize(channel.size());
  std::vector<int> group_of_code(256, 0);
  for (int k = 0; k < 256; ++k) {
    if (distinct_of_code[k] >= 0) group_of_code[k] = group_of_distinct[static_cast<std::size_t>(distinct_of_code[k])];
  }
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, channel.size(), 4096), [&](const tbb::blocked_range<std::size_t>& block) {
    for (std::size_t i = block.begin(); i < block.end(); ++i) {
      q.index[i] = static_cast<std::uint16_t>(
          codes ? group_of_code[(*codes)[i]]
                : std::upper_bound(starts.begin(), starts.end(), (*channel.values)[i]) - starts.begin() - 1);
    }
  });
  return q;
}

// The plane's 8-bit codes when it has them (exact_codes), else its values.
Quantised quantise(const Plane& v, int levels) {
  const std::optional<std::vector<std::uint8_t>> codes = exact_codes(v);
  return codes ? quantise({.codes = &*codes}, levels) : quantise({.values = &v}, levels);
}

struct FeatureMap {
  std::vector<int> label;        // per pixel
  std::vector<float> weight;     // K × K
  int count = 0;
};

// MATLAB uint8(): round half away from zero, saturate.
int to_u8(double v) { return static_cast<int>(std::clamp(std::round(v), 0.0, 255.0)); }

// How the guide maps to features: for a double guide jointWMF.m rescales
// the values from [lo, hi] (over all channels) to 8 bits and multiplies σ by
// 255/range; an 8-bit guide is taken as it is. Scanned once per image.
struct GuideScale {
  double lo = 0, hi = 0;
  double sigma = 0;  ///< σ as the weights use it
};

// The image as the filter reads it: when it lies on the 8-bit lattice (every
// value float32(k/255), so that to_double_planes would make it exactly k/255),
// each channel's codes k, one byte a value; otherwise float64 planes.
struct Channels {
  std::vector<std::vector<std::uint8_t>> codes;  // on the lattice
  std::vector<CodeHistogram> histograms;         // of the codes
  std::vector<Plane> planes;                     // otherwise
  bool on_lattice() const { return !codes.empty(); }
  std::size_t count() const { return on_lattice() ? codes.size() : planes.size(); }
  std::size_t pixels() const { return on_lattice() ? codes[0].size() : planes[0].size(); }
};

// One pass over the image: the codes when it is on the lattice, and only
// otherwise the planes (24 MB of fresh float64 pages at 1 MP RGB, 20 ms on
// the machines measured).
Channels read_channels(const Image& img) {
  const int channels = img.channels();
  const std::size_t n = static_cast<std::size_t>(img.rows) * img.cols;
  Channels out;
  out.codes.assign(static_cast<std::size_t>(channels), std::vector<std::uint8_t>(n));
  std::atomic<bool> on_lattice{true};
  // Histograms of the codes by blocks of rows, summed in block order.
  constexpr int kBlockRows = 64;
  const int blocks = (img.rows + kBlockRows - 1) / kBlockRows;
  std::vector<std::vector<CodeHistogram>> block_histograms(static_cast<std::size_t>(blocks),
                                                           std::vector<CodeHistogram>(static_cast<std::size_t>(channels)));
  tbb::parallel_for(0, blocks, [&](int block) {
    unsigned off = 0;
    std::vector<CodeHistogram>& histogram = block_histograms[static_cast<std::size_t>(block)];
    for (int y = block * kBlockRows; y < std::min(img.rows, (block + 1) * kBlockRows); ++y) {
      const float* src = img.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * img.cols;
      for (int k = 0; k < channels; ++k) {
        std::uint8_t* dst = out.codes[static_cast<std::size_t>(k)].data() + row;
        for (int x = 0; x < img.cols; ++x) {
          // promote()'s rounding, and its test of the lattice.
          const float v = src[x * channels + k];
          const int code = lattice_code(v);
          off |= static_cast<float>(lattice_value(code)) != v ? 1u : 0u;
          dst[x] = static_cast<std::uint8_t>(code);
        }
        for (int x = 0; x < img.cols; ++x) ++histogram[static_cast<std::size_t>(k)][dst[x]];
      }
    }
    if (off) on_lattice.store(false, std::memory_order_relaxed);
  });
  if (on_lattice) {
    out.histograms.assign(static_cast<std::size_t>(channels), CodeHistogram{});
    for (const auto& block : block_histograms) {
      for (int k = 0; k < channels; ++k) {
        for (int code = 0; code < 256; ++code) {
          out.histograms[static_cast<std::size_t>(k)][static_cast<std::size_t>(code)] +=
              block[static_cast<std::size_t>(k)][static_cast<std::size_t>(code)];
        }
      }
    }
  } else {
    out.codes.clear();
    out.planes = to_double_planes(img);
  }
  return out;
}

GuideScale guide_scale(const Channels& image, const WeightedMedianParams& p) {
  GuideScale g{0, 0, p.sigma};
  if (p.guide != WmfGuide::self_double) return g;
  if (image.on_lattice()) {
    int lo = 255, hi = 0;
    for (const CodeHistogram& h : image.histograms) {
      for (int k = 0; k < 256; ++k) {
        if (h[static_cast<std::size_t>(k)] == 0) continue;
        lo = std::min(lo, k);
        hi = std::max(hi, k);
      }
    }
    g.lo = lattice_value(lo);
    g.hi = lattice_value(hi);
  } else {
    g.lo = g.hi = image.planes[0][0];
    for (const auto& c : image.planes) {
      const auto [a, b] = std::minmax_element(c.begin(), c.end());
      g.lo = std::min(g.lo, *a);
      g.hi = std::max(g.hi, *b);
    }
  }
  if (g.hi > g.lo) g.sigma = p.sigma * 255.0 / (g.hi - g.lo);
  return g;
}

// A lower bound of every weight W[i][j] that feature_map can produce, known
// before the clustering: the weights fall with the distance of two features,
// and no two are further apart than 255 grey levels or, for a colour guide,
// than opposite corners of the 6-bit cube (3·63², with room for the
// rounding of cluster means). Every W[i][i] is 1.
float weight_floor(int channels, const GuideScale& g) {
  if (channels == 1) return std::exp(-static_cast<float>(255 * 255) / static_cast<float>(2.0 * g.sigma * g.sigma));
  const float s = static_cast<float>(g.sigma / 4.0);
  return std::exp(-static_cast<float>(3 * 63 * 63 * (1 + 1e-5)) / (2.0f * s * s));
}

FeatureMap feature_map(const Channels& image, const WeightedMedianParams& p, const GuideScale& scale) {
  const int channels = static_cast<int>(image.count());
  const std::size_t n = image.pixels();
  // The 8-bit feature of a value.
  const double lo = scale.lo, range = scale.hi - scale.lo;
  const auto feature = [&](double v) {
    if (p.guide == WmfGuide::self_double) return static_cast<std::uint8_t>(range > 0 ? to_u8((v - lo) * 255.0 / range) : 0);
    return static_cast<std::uint8_t>(to_u8(v * 255.0));
  };
  std::vector<std::vector<std::uint8_t>> f(channels, std::vector<std::uint8_t>(n));
  if (image.on_lattice()) {
    std::array<std::uint8_t, 256> of_code{};
    for (int k = 0; k < 256; ++k) of_code[static_cast<std::size_t>(k)] = feature(lattice_value(k));
    for (int c = 0; c < channels; ++c) {
      tbb::parallel_for(std::size_t{0}, n, [&](std::size_t i) { f[c][i] = of_code[image.codes[c][i]]; });
    }
  } else {
    for (int c = 0; c < channels; ++c) {
      tbb::parallel_for(std::size_t{0}, n, [&](std::size_t i) { f[c][i] = feature(image.planes[c][i]); });
    }
  }
  const double sigma = scale.sigma;
  FeatureMap m;
  m.label.resize(n);
  if (channels == 1) {
    m.count = 256;
    for (std::size_t i = 0; i < n; ++i) m.label[i] = f[0][i];
    m.weight.resize(256 * 256);
    const float s2 = static_cast<float>(2.0 * sigma * sigma);
    for (int a = 0; a < 256; ++a) {
      for (int b = 0; b < 256; ++b) m.weight[a * 256 + b] = std::exp(-static_cast<float>((a - b) * (a - b)) / s2);
    }
    return m;
  }
  // Colour guide: 6 bits a channel, distinct triples in lexicographic order,
  // k-means from OpenCV's default RNG state (as in a fresh process).
  // A triple's code (c0 << 12 | c1 << 6 | c2) orders codes lexicographically.
  constexpr int kCodes = 1 << 18;
  std::vector<int> index_of(kCodes, -1);
  std::vector<int> code(n);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 1 << 14), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t i = r.begin(); i < r.end(); ++i) code[i] = ((f[0][i] >> 2) << 12) | ((f[1][i] >> 2) << 6) | (f[2][i] >> 2);
  });
  for (std::size_t i = 0; i < n; ++i) index_of[code[i]] = 0;
  int distinct = 0;
  for (int c = 0; c < kCodes; ++c) {
    if (index_of[c] == 0) index_of[c] = ++distinct;  // 1-based while marking
  }
  cv::Mat samples(distinct, 3, CV_32F);
  for (int c = 0; c < kCodes; ++c) {
    if (index_of[c] <= 0) continue;
    const int row = --index_of[c];
    samples.at<float>(row, 0) = static_cast<float>(c >> 12);
    samples.at<float>(row, 1) = static_cast<float>((c >> 6) & 63);
    samples.at<float>(row, 2) = static_cast<float>(c & 63);
  }
  const int k = std::min({p.levels_feature, 256, samples.rows});
  cv::Mat labels, centres;
  if (k == samples.rows) {  // every colour its own cluster
    labels = cv::Mat(samples.rows, 1, CV_32S);
    for (int r = 0; r < samples.rows; ++r) labels.at<int>(r) = r;
    centres = samples.clone();
  } else {
    cv::theRNG() = cv::RNG();
    cv::kmeans(samples, k, labels, cv::TermCriteria(cv::TermCriteria::COUNT | cv::TermCriteria::EPS, 0, 10000), 1,
               cv::KMEANS_PP_CENTERS, centres);
  }
  m.count = k;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 1 << 14), [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t i = r.begin(); i < r.end(); ++i) m.label[i] = labels.at<int>(index_of[code[i]]);
  });
  m.weight.resize(static_cast<std::size_t>(k) * k);
  const float s = static_cast<float>(sigma / 4.0);
  for (int a = 0; a < k; ++a) {
    for (int b = 0; b < k; ++b) {
      float d2 = 0;
      for (int c = 0; c < 3; ++c) {
        const float d = centres.at<float>(a, c) - centres.at<float>(b, c);
        d2 += d * d;
      }
      m.weight[static_cast<std::size_t>(a) * k + b] = std::exp(-d2 / (2.0f * s * s));
    }
  }
  return m;
}

// The weighted median of the window around (y, x), evaluated directly:
// `hist` (one entry per level, all zero on entry and on return) collects
// each level's weight in the window's row-major order.
int direct_median_at(const Quantised& q, const FeatureMap& features, int rows, int cols, int r, int y, int x,
                     std::vector<double>& hist) {
  const int groups = static_cast<int>(q.value.size());
  const float* w = features.weight.data() +
                   static_cast<std::size_t>(features.label[static_cast<std::size_t>(y) * cols + x]) * features.count;
  double total = 0;
  for (int yy = std::max(0, y - r); yy <= std::min(rows - 1, y + r); ++yy) {
    for (int xx = std::max(0, x - r); xx <= std::min(cols - 1, x + r); ++xx) {
      const std::size_t i = static_cast<std::size_t>(yy) * cols + xx;
      const double wq = w[features.label[i]];
      hist[q.index[i]] += wq;
      total += wq;
    }
  }
  // Lower weighted median: the first level whose cumulative weight reaches
  // the weight above it.
  double below = 0;
  int g = 0;
  for (; g < groups; ++g) {
    below += hist[g];
    if (below >= total - below) break;
  }
  for (int yy = std::max(0, y - r); yy <= std::min(rows - 1, y + r); ++yy) {
    for (int xx = std::max(0, x - r); xx <= std::min(cols - 1, x + r); ++xx) {
      hist[q.index[static_cast<std::size_t>(yy) * cols + xx]] = 0;
    }
  }
  return std::min(g, groups - 1);
}

// One channel by direct evaluation of every window: the plain reference.
Levels median_direct(const Quantised& q, const FeatureMap& features, int rows, int cols, int r) {
  Levels out(q.index.size());
  tbb::parallel_for(0, rows, [&](int y) {
    std::vector<double> hist(q.value.size(), 0.0);
    for (int x = 0; x < cols; ++x) {
      out[static_cast<std::size_t>(y) * cols + x] =
          static_cast<std::uint16_t>(direct_median_at(q, features, rows, cols, r, y, x, hist));
    }
  });
  return out;
}

// Each label's smallest and largest weight to any label.
struct WeightBounds {
  std::vector<double> low, high;
};

WeightBounds weight_bounds(const FeatureMap& features) {
  WeightBounds b{std::vector<double>(features.count), std::vector<double>(features.count)};
  for (int l = 0; l < features.count; ++l) {
    const float* w = features.weight.data() + static_cast<std::size_t>(l) * features.count;
    const auto [lo, hi] = std::minmax_element(w, w + features.count);
    b.low[l] = *lo;
    b.high[l] = *hi;
  }
  return b;
}

// True when the weights are so nearly uniform that counts decide the
// weighted median of every window of an odd number of pixels: a window's
// count balance is then an odd integer, and no spread of the weights can
// outweigh it. (Fan et al.'s literal call has σ ≈ 6500 and weights within
// 0.3 % of each other.)
bool counts_decide(double low, double high, int r) {
  const double window = static_cast<double>(2 * r + 1) * (2 * r + 1);
  return (high - low) * window <= low;
}

bool counts_decide(const WeightBounds& b, int r) {
  for (std::size_t l = 0; l < b.low.size(); ++l) {
    if (!counts_decide(b.low[l], b.high[l], r)) return false;
  }
  return true;
}

// One channel for nearly uniform weights: each row slides a histogram of
// levels and tracks the unweighted lower median; the bounds of a pixel's
// weights, bounds(p) = {lo, hi}, then prove it is the weighted median too (the
// weighted balance at the median is ≥ 0 and one level below it < 0, whatever
// the weights of the window), and out[p] is written; where they cannot (an
// even window split exactly in two) undecided(p, band) is called instead, to
// evaluate the window directly. Every result therefore equals the direct
// evaluation's, bit for bit.
constexpr int kCountingBand = 8;  // rows a task slides side by side

template <class Bounds, class Undecided>
void median_counting(const Quantised& q, int rows, int cols, int r, Bounds&& bounds, Undecided&& undecided,
                     Levels& out) {
  const int groups = static_cast<int>(q.value.size());
  out.resize(q.index.size());
  // A task slides the windows of a band of rows side by side, so that the
  // cache lines of each window column serve the whole band (and the next
  // columns along the row).
  const int bands = (rows + kCountingBand - 1) / kCountingBand;
  tbb::parallel_for(0, bands, [&](int band) {
    struct Window {
      int y0 = 0, height = 0;
      int median = 0, below = 0, n = 0;  // below: pixels at or below the median level
      // Two counts per level, for even and odd window rows (the halves of
      // `counts`): a run of one level down a column (smooth regions)
      // updates two counters in turn instead of waiting on one.
      std::vector<int> counts;
      int groups = 0;
      int hist(int g) const { return counts[static_cast<std::size_t>(g)] + counts[static_cast<std::size_t>(groups + g)]; }
      // The window's column x: levels[(y0 + k)·cols + x] for k < height.
      void add_column(const std::uint16_t* column, std::size_t stride, int sign) {
        int at_or_below = 0;
        int* even = counts.data();
        int* odd = even + groups;
        const int m = median, h = height;  // locals: the stores to the counts cannot change them
        int k = 0;
        for (; k + 1 < h; k += 2) {
          const int l0 = column[static_cast<std::size_t>(k) * stride], l1 = column[static_cast<std::size_t>(k + 1) * stride];
          even[l0] += sign;
          odd[l1] += sign;
          at_or_below += (l0 <= m ? 1 : 0) + (l1 <= m ? 1 : 0);
        }
        if (k < h) {
          const int l0 = column[static_cast<std::size_t>(k) * stride];
          even[l0] += sign;
          at_or_below += l0 <= m ? 1 : 0;
        }
        below += sign * at_or_below;
        n += sign * height;
      }
      // One step along the row: column `leaving` out, column `entering` in,
      // in one pass over the window's rows.
      void slide(const std::uint16_t* leaving, const std::uint16_t* entering, std::size_t stride) {
        int* even = counts.data();
        int* odd = even + groups;
        const int m = median, h = height;
        int change = 0;
        int k = 0;
        for (; k + 1 < h; k += 2) {
          const std::size_t a = static_cast<std::size_t>(k) * stride, b = a + stride;
          const int out0 = leaving[a], out1 = leaving[b], in0 = entering[a], in1 = entering[b];
          --even[out0];
          --odd[out1];
          ++even[in0];
          ++odd[in1];
          change += (in0 <= m ? 1 : 0) + (in1 <= m ? 1 : 0) - (out0 <= m ? 1 : 0) - (out1 <= m ? 1 : 0);
        }
        if (k < h) {
          const std::size_t a = static_cast<std::size_t>(k) * stride;
          const int out0 = leaving[a], in0 = entering[a];
          --even[out0];
          ++even[in0];
          change += (in0 <= m ? 1 : 0) - (out0 <= m ? 1 : 0);
        }
        below += change;
      }
    };
    const int first = band * kCountingBand, last = std::min(rows, first + kCountingBand);
    std::vector<Window> windows(last - first);
    for (int y = first; y < last; ++y) {
      Window& w = windows[y - first];
      w.y0 = std::max(0, y - r);
      w.height = std::min(rows - 1, y + r) - w.y0 + 1;
      w.counts.assign(2 * static_cast<std::size_t>(groups), 0);
      w.groups = groups;
    }
    const std::size_t stride = static_cast<std::size_t>(cols);
    const auto column = [&](int x, const Window& w) { return q.index.data() + static_cast<std::size_t>(w.y0) * stride + x; };
    for (int x = 0; x < cols; ++x) {
      for (int y = first; y < last; ++y) {
        Window& w = windows[y - first];
        if (x == 0) {
          for (int xx = 0; xx <= std::min(cols - 1, r); ++xx) w.add_column(column(xx, w), stride, +1);
        } else if (x - r - 1 >= 0 && x + r < cols) {
          w.slide(column(x - r - 1, w), column(x + r, w), stride);
        } else {
          if (x - r - 1 >= 0) w.add_column(column(x - r - 1, w), stride, -1);
          if (x + r < cols) w.add_column(column(x + r, w), stride, +1);
        }
        // The unweighted lower median: the lowest level m with 2·C(m) ≥ n.
        while (2 * w.below < w.n) w.below += w.hist(++w.median);
        while (w.median > 0 && 2 * (w.below - w.hist(w.median)) >= w.n) w.below -= w.hist(w.median--);
        const std::size_t p = static_cast<std::size_t>(y) * cols + x;
        const auto [lo, hi] = bounds(p);
        // The weighted balance at m is at least lo·C(m) − hi·(n − C(m)); one
        // level below, at most hi·C(m−1) − lo·(n − C(m−1)). The margin keeps
        // clear of the direct evaluation's rounding.
        const int below = w.below, below_prev = w.below - w.hist(w.median), n = w.n;
        const double margin = 1e-9 * hi * n;
        if (lo * below - hi * (n - below) > margin && hi * below_prev - lo * (n - below_prev) < -margin) {
          out[p] = static_cast<std::uint16_t>(w.median);
        } else {
          undecided(p, band);
        }
      }
    }
  });
}

// The windows median_counting left undecided, band by band.
using Undecided = std::vector<std::vector<std::size_t>>;

Undecided undecided_bands(int rows) { return Undecided(static_cast<std::size_t>((rows + kCountingBand - 1) / kCountingBand)); }

// Evaluates the undecided windows directly into out.
void evaluate_undecided(const Quantised& q, const FeatureMap& features, int rows, int cols, int r,
                        const Undecided& undecided, Levels& out) {
  tbb::parallel_for(std::size_t{0}, undecided.size(), [&](std::size_t band) {
    std::vector<double> scratch(q.value.size(), 0.0);
    for (const std::size_t p : undecided[band]) {
      const int y = static_cast<int>(p / static_cast<std::size_t>(cols)), x = static_cast<int>(p % cols);
      out[p] = static_cast<std::uint16_t>(direct_median_at(q, features, rows, cols, r, y, x, scratch));
    }
  });
}

// median_counting with the feature map at hand: each pixel's bounds are its
// label's.
Levels median_counting(const Quantised& q, const FeatureMap& features, const WeightBounds& bounds, int rows, int cols,
                       int r) {
  Levels out;
  Undecided undecided = undecided_bands(rows);
  median_counting(
      q, rows, cols, r,
      [&](std::size_t p) {
        const int label = features.label[p];
        return std::pair{bounds.low[label], bounds.high[label]};
      },
      [&](std::size_t p, int band) { undecided[static_cast<std::size_t>(band)].push_back(p); }, out);
  evaluate_undecided(q, features, rows, cols, r, undecided, out);
  return out;
}

// One channel with Zhang et al.'s joint histogram and median tracking: each
// row slides a window whose pixels are counted per (feature label, level);
// for each label the count at or below the current median level is kept, so
// a pixel's weighted balance is a sum over the labels present in its window,
// and the median moves a level at a time from the previous pixel's. Counts
// are integers, so nothing drifts; only the order of the weighted sums
// differs from the direct evaluation, which can flip exact ties.
Levels median_tracking(const Quantised& q, const FeatureMap& features, int rows, int cols, int r) {
  const int groups = static_cast<int>(q.value.size());
  const int labels = features.count;
  Levels out(q.index.size());
  // (label << 16 | level) per pixel: one load per window update.
  std::vector<std::uint32_t> packed(q.index.size());
  tbb::parallel_for(std::size_t{0}, packed.size(), [&](std::size_t i) {
    packed[i] = static_cast<std::uint32_t>(features.label[i]) << 16 | static_cast<std::uint32_t>(q.index[i]);
  });
  tbb::parallel_for(tbb::blocked_range<int>(0, rows, 4), [&](const tbb::blocked_range<int>& row_range) {
    std::vector<int> joint(static_cast<std::size_t>(labels) * groups, 0);  // label-major counts
    std::vector<int> total(labels, 0), at_or_below(labels, 0);
    std::vector<int> active, position(labels, -1);  // labels present in the window
    // The window rows transposed, so a column's pixels are contiguous (rows
    // of a power-of-two width would otherwise fight over the same L1 sets).
    std::vector<std::uint32_t> columns(static_cast<std::size_t>(2 * r + 1) * cols);
    for (int y = row_range.begin(); y < row_range.end(); ++y) {
      const int y0 = std::max(0, y - r), y1 = std::min(rows - 1, y + r), height = y1 - y0 + 1;
      for (int k = 0; k < height; ++k) {
        const std::uint32_t* src = packed.data() + static_cast<std::size_t>(y0 + k) * cols;
        for (int x = 0; x < cols; ++x) columns[static_cast<std::size_t>(x) * height + k] = src[x];
      }
      int median = 0;
      const auto add_column = [&](int x, int sign) {
        const std::uint32_t* column = columns.data() + static_cast<std::size_t>(x) * height;
        for (int k = 0; k < height; ++k) {
          const std::uint32_t v = column[k];
          const int f = static_cast<int>(v >> 16), g = static_cast<int>(v & 0xffffu);
          joint[static_cast<std::size_t>(f) * groups + g] += sign;
          total[f] += sign;
          if (g <= median) at_or_below[f] += sign;
          if (sign > 0 && total[f] == 1) {
            position[f] = static_cast<int>(active.size());
            active.push_back(f);
          } else if (sign < 0 && total[f] == 0) {
            const int last = active.back();
            active[position[f]] = last;
            position[last] = position[f];
            active.pop_back();
            position[f] = -1;
          }
        }
      };
      for (int x = 0; x <= std::min(cols - 1, r); ++x) add_column(x, +1);
      for (int x = 0; x < cols; ++x) {
        if (x > 0) {
          if (x - r - 1 >= 0) add_column(x - r - 1, -1);
          if (x + r < cols) add_column(x + r, +1);
        }
        const float* w = features.weight.data() +
                         static_cast<std::size_t>(features.label[static_cast<std::size_t>(y) * cols + x]) * labels;
        double all = 0, below = 0;
        for (int f : active) {
          all += static_cast<double>(w[f]) * total[f];
          below += static_cast<double>(w[f]) * at_or_below[f];
        }
        // The lowest level whose cumulative weight reaches the rest.
        if (below >= all - below) {
          while (median > 0) {
            double lower = 0;  // cumulative weight through median − 1
            for (int f : active) {
              lower += static_cast<double>(w[f]) * (at_or_below[f] - joint[static_cast<std::size_t>(f) * groups + median]);
            }
            if (!(lower >= all - lower)) break;
            for (int f : active) at_or_below[f] -= joint[static_cast<std::size_t>(f) * groups + median];
            --median;
            below = lower;
          }
        } else {
          while (median + 1 < groups && !(below >= all - below)) {
            ++median;
            below = 0;
            for (int f : active) {
              at_or_below[f] += joint[static_cast<std::size_t>(f) * groups + median];
              below += static_cast<double>(w[f]) * at_or_below[f];
            }
          }
        }
        out[static_cast<std::size_t>(y) * cols + x] = static_cast<std::uint16_t>(median);
      }
      // Empty the window for the next row (only the labels present).
      for (int f : active) {
        std::fill(joint.begin() + static_cast<std::ptrdiff_t>(f) * groups,
                  joint.begin() + static_cast<std::ptrdiff_t>(f + 1) * groups, 0);
        total[f] = at_or_below[f] = 0;
        position[f] = -1;
      }
      active.clear();
    }
  });
  return out;
}

// The filter's choice: counts with a proof per pixel where the weights are
// nearly uniform, the joint histogram otherwise.
Levels median_fastest(const Quantised& q, const FeatureMap& features, int rows, int cols, int r) {
  const WeightBounds bounds = weight_bounds(features);
  return counts_decide(bounds, r) ? median_counting(q, features, bounds, rows, cols, r)
                                  : median_tracking(q, features, rows, cols, r);
}

Image weighted_median_with(const Image& input, const WeightedMedianParams& params,
                           Levels (*median)(const Quantised&, const FeatureMap&, int, int, int)) {
  const int rows = input.rows, cols = input.cols, r = static_cast<int>(params.radius + 0.5);
  Channels image = read_channels(input);
  const std::size_t channels = image.count();
  std::vector<Quantised> levels(channels);
  const auto quantise_all = [&] {
    tbb::parallel_for(std::size_t{0}, channels, [&](std::size_t c) {
      levels[c] = image.on_lattice()
                      ? quantise({.codes = &image.codes[c], .histogram = &image.histograms[c]}, params.levels_input)
                      : quantise(image.planes[c], params.levels_input);
    });
  };
  FeatureMap features;
  std::vector<Levels> out(channels);
  int done = 0;  // iterations finished
  const GuideScale scale = guide_scale(image, params);
  const float floor = weight_floor(static_cast<int>(channels), scale);
  if (median == median_fastest && counts_decide(floor, 1.0, r)) {
    // The counts need only bounds of the weights, which are known before the
    // feature map: its k-means (OpenCV's, on one thread) runs beside the
    // first pass, and only the windows the bounds leave undecided wait for
    // the labels.
    std::vector<Undecided> undecided(channels, undecided_bands(rows));
    tbb::parallel_invoke([&] { features = feature_map(image, params, scale); },
                         [&] {
                           quantise_all();
                           for (std::size_t c = 0; c < channels; ++c) {
                             median_counting(
                                 levels[c], rows, cols, r,
                                 [floor](std::size_t) { return std::pair{static_cast<double>(floor), 1.0}; },
                                 [&](std::size_t p, int band) { undecided[c][band].push_back(p); }, out[c]);
                           }
                         });
    for (std::size_t c = 0; c < channels; ++c) evaluate_undecided(levels[c], features, rows, cols, r, undecided[c], out[c]);
    done = 1;
  } else {
    // The feature map and the first quantisation are independent.
    tbb::parallel_invoke([&] { features = feature_map(image, params, scale); }, quantise_all);
  }
  for (int it = done; it < params.iterations; ++it) {
    if (it > 0) {
      // The last result is the next input: on the lattice its values (group
      // representatives, each some k/255) are codes again.
      tbb::parallel_for(std::size_t{0}, channels, [&](std::size_t c) {
        const Quantised& q = levels[c];
        if (image.on_lattice()) {
          std::vector<std::uint8_t> code_of_group(q.value.size());
          for (std::size_t g = 0; g < q.value.size(); ++g) {
            code_of_group[g] = static_cast<std::uint8_t>(std::lround(q.value[g] * 255.0));
          }
          for (std::size_t i = 0; i < out[c].size(); ++i) image.codes[c][i] = code_of_group[out[c][i]];
        } else {
          for (std::size_t i = 0; i < out[c].size(); ++i) image.planes[c][i] = q.value[out[c][i]];
        }
      });
      quantise_all();
    }
    for (std::size_t c = 0; c < channels; ++c) out[c] = median(levels[c], features, rows, cols, r);
  }
  // Each pixel's value: its median group's representative.
  Image result(rows, cols, CV_MAKETYPE(CV_32F, static_cast<int>(channels)));
  tbb::parallel_for(tbb::blocked_range<int>(0, rows, 64), [&](const tbb::blocked_range<int>& range) {
    for (int y = range.begin(); y < range.end(); ++y) {
      float* d = result.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * cols;
      for (std::size_t k = 0; k < channels; ++k) {
        const Levels& o = out[k];
        const std::vector<double>& value = levels[k].value;
        for (int x = 0; x < cols; ++x) d[static_cast<std::size_t>(x) * channels + k] = static_cast<float>(value[o[row + static_cast<std::size_t>(x)]]);
      }
    }
  });
  return result;
}

// The typed API's checks, then the filter with `median`.
Image checked_weighted_median(const Image& input, const WeightedMedianParams& params,
                              Levels (*median)(const Quantised&, const FeatureMap&, int, int, int)) {
  require_image(input, "weighted_median");
  params_table().validate(params);
  return weighted_median_with(input, params, median);
}

}  // namespace

Image weighted_median(const Image& input, const WeightedMedianParams& params) {
  return checked_weighted_median(input, params, median_fastest);
}

namespace reference {

Image weighted_median(const Image& input, const WeightedMedianParams& params) {
  return checked_weighted_median(input, params, median_direct);
}

Image weighted_median_joint_histogram(const Image& input, const WeightedMedianParams& params) {
  return checked_weighted_median(input, params, median_tracking);
}

}  // namespace reference

OperatorEntry weighted_median_entry() {
  return make_entry<WeightedMedianParams>({
      .summary = "joint weighted median filter (exp weights on a feature map of the image itself)",
      .citation = "Q. Zhang, L. Xu, J. Jia, \"100+ Times Faster Weighted Median Filter (WMF)\", CVPR 2014; matches the "
                  "authors' jointWMF.m/jointWMF.h (guide=self_double is the papers' literal call)",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = &params_table(),
      // Planes (38 B/px grey, 78 B/px RGB measured at 1 MP) and, per thread,
      // a joint histogram and the window's columns.
      .keeps_constant = 0.0,  // the median is one of the window's values
      .peak_bytes = [](const Image& img, const WeightedMedianParams& p) {
        const double r = std::floor(p.radius + 0.5);
        const double per_thread = 4.0 * 256 * static_cast<double>(p.levels_input) + 4.0 * (2 * r + 1) * img.cols;
        return pixel_count(img) * (30.0 + 29.0 * img.channels()) + operator_threads() * per_thread;
      },
      .run = [](const Image& img, const WeightedMedianParams& p, const RunContext&) {
        return weighted_median_with(img, p, median_fastest);
      },
  });
}

}  // namespace opforge
