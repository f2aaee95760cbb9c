// Joint weighted median (Zhang, Xu, Jia 2014), OPERATORS.md §5.

#include "opforge/operators/weighted_median.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <opencv2/core.hpp>

#include "entries.hpp"
#include "opforge/core/error.hpp"

namespace opforge {
namespace {

const std::vector<ParamSpec>& wmf_specs() {
  static const std::vector<ParamSpec> specs = {
      real_param("radius", 10.0, 0.0, 100.0, false, false, SamplingScale::linear,
                 "window radius, rounded as the authors' gateway does: (int)(r + 0.5)"),
      real_param("sigma", 25.5, 0.0, 1e4, true, false, SamplingScale::log, "weight sigma in 0-255 units"),
      choice_param("guide", "self_double", {"self_double", "self_u8"},
                   "self_double: the papers' literal call (double guide: rescaled, sigma x 255/range); self_u8: the "
                   "8-bit image as guide"),
      integer_param("iterations", 1, 1, 10, "repeats with the same feature map"),
      integer_param("levels_input", 256, 2, 4096, "nI: quantisation levels of the filtered values"),
      integer_param("levels_feature", 256, 2, 4096, "nF: feature levels (colour clusters of a 3-channel guide)"),
  };
  return specs;
}

// Groups of one channel's sorted values (the authors' quantisation to nI
// levels): value → group index, and each group's lower-median member.
struct Quantised {
  std::vector<int> index;       // per pixel
  std::vector<double> value;    // per group
};

int count_groups(const std::vector<double>& sorted, double e) {
  int groups = 0;
  double first = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (i == 0 || sorted[i] > first + e) {
      ++groups;
      first = sorted[i];
    }
  }
  return groups;
}

Quantised quantise(const Plane& v, int levels) {
  std::vector<double> sorted(v);
  std::sort(sorted.begin(), sorted.end());
  const double range = sorted.back() - sorted.front();
  double lo = 0, hi = 2.0 * range / levels;
  while (hi - lo >= 1e-5) {
    const double mid = 0.5 * (lo + hi);
    if (count_groups(sorted, mid) <= levels) hi = mid; else lo = mid;
  }
  const double e = count_groups(sorted, lo) <= levels ? lo : hi;
  // Greedy groups over the sorted values; representative = lower median.
  std::vector<double> starts, reps;
  std::size_t begin = 0;
  for (std::size_t i = 1; i <= sorted.size(); ++i) {
    if (i == sorted.size() || sorted[i] > sorted[begin] + e) {
      starts.push_back(sorted[begin]);
      reps.push_back(sorted[begin + (i - 1 - begin) / 2]);
      begin = i;
    }
  }
  Quantised q;
  q.value = reps;
  q.index.resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    q.index[i] = static_cast<int>(std::upper_bound(starts.begin(), starts.end(), v[i]) - starts.begin()) - 1;
  }
  return q;
}

struct FeatureMap {
  std::vector<int> label;        // per pixel
  std::vector<float> weight;     // K × K
  int count = 0;
};

// MATLAB uint8(): round half away from zero, saturate.
int to_u8(double v) { return static_cast<int>(std::clamp(std::round(v), 0.0, 255.0)); }

FeatureMap feature_map(const std::vector<Plane>& image, const WeightedMedianParams& p) {
  const std::size_t n = image[0].size();
  const int channels = static_cast<int>(image.size());
  std::vector<std::vector<int>> f(channels, std::vector<int>(n));
  double sigma = p.sigma;
  if (p.guide == WmfGuide::self_double) {
    double lo = image[0][0], hi = image[0][0];
    for (const auto& c : image) {
      const auto [a, b] = std::minmax_element(c.begin(), c.end());
      lo = std::min(lo, *a);
      hi = std::max(hi, *b);
    }
    const double range = hi - lo;
    if (range > 0) sigma = sigma * 255.0 / range;
    for (int c = 0; c < channels; ++c) {
      for (std::size_t i = 0; i < n; ++i) f[c][i] = range > 0 ? to_u8((image[c][i] - lo) * 255.0 / range) : 0;
    }
  } else {
    for (int c = 0; c < channels; ++c) {
      for (std::size_t i = 0; i < n; ++i) f[c][i] = to_u8(image[c][i] * 255.0);
    }
  }
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
  std::map<std::array<int, 3>, int> distinct;
  std::vector<std::array<int, 3>> triple(n);
  for (std::size_t i = 0; i < n; ++i) {
    triple[i] = {f[0][i] >> 2, f[1][i] >> 2, f[2][i] >> 2};
    distinct.emplace(triple[i], 0);
  }
  cv::Mat samples(static_cast<int>(distinct.size()), 3, CV_32F);
  int row = 0;
  for (auto& [t, index] : distinct) {
    index = row;
    for (int c = 0; c < 3; ++c) samples.at<float>(row, c) = static_cast<float>(t[c]);
    ++row;
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
  for (std::size_t i = 0; i < n; ++i) m.label[i] = labels.at<int>(distinct.at(triple[i]));
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

}  // namespace

Image weighted_median(const Image& input, const WeightedMedianParams& params) {
  require_image(input, "weighted_median");
  ParamValues v;
  v.set("radius", params.radius);
  v.set("sigma", params.sigma);
  v.set("iterations", static_cast<double>(params.iterations));
  v.set("levels_input", static_cast<double>(params.levels_input));
  v.set("levels_feature", static_cast<double>(params.levels_feature));
  validate_params("weighted_median", wmf_specs(), v);
  const int rows = input.rows, cols = input.cols, r = static_cast<int>(params.radius + 0.5);
  std::vector<Plane> image = to_double_planes(input);
  const FeatureMap features = feature_map(image, params);
  for (int it = 0; it < params.iterations; ++it) {
    for (auto& channel : image) {
      const Quantised q = quantise(channel, params.levels_input);
      const int groups = static_cast<int>(q.value.size());
      Plane out(channel.size());
      tbb::parallel_for(0, rows, [&](int y) {
        std::vector<double> hist(groups);
        for (int x = 0; x < cols; ++x) {
          std::fill(hist.begin(), hist.end(), 0.0);
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
          // Lower weighted median: the first level whose cumulative weight
          // reaches the weight above it.
          double below = 0;
          int g = 0;
          for (; g < groups; ++g) {
            below += hist[g];
            if (below >= total - below) break;
          }
          out[static_cast<std::size_t>(y) * cols + x] = q.value[std::min(g, groups - 1)];
        }
      });
      channel = std::move(out);
    }
  }
  return from_double_planes(image, rows, cols);
}

OperatorEntry weighted_median_entry() {
  return {
      .name = "weighted_median",
      .summary = "joint weighted median filter (exp weights on a feature map of the image itself)",
      .citation = "Q. Zhang, L. Xu, J. Jia, \"100+ Times Faster Weighted Median Filter (WMF)\", CVPR 2014; matches the "
                  "authors' jointWMF.m/jointWMF.h (guide=self_double is the papers' literal call)",
      .kind = OperatorKind::filter,
      .version = "1",
      .params = wmf_specs(),
      .run = [](const Image& img, const ParamValues& p, const RunContext&) {
        return weighted_median(img, {.radius = p.number("radius"),
                                     .sigma = p.number("sigma"),
                                     .guide = p.choice("guide") == "self_u8" ? WmfGuide::self_u8 : WmfGuide::self_double,
                                     .iterations = static_cast<int>(p.integer("iterations")),
                                     .levels_input = static_cast<int>(p.integer("levels_input")),
                                     .levels_feature = static_cast<int>(p.integer("levels_feature"))});
      },
  };
}

}  // namespace opforge
