#include "opforge/learner/evaluate.hpp"

#include <algorithm>
#include <cmath>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/core/params.hpp"
#include "opforge/datagen/dataset.hpp"
#include "opforge/model/cpu_executor.hpp"

namespace opforge::learner {
namespace {

constexpr int kBins = 5;

// A pair's scores and its parameter's value (NaN when nothing is binned).
struct BinnedScore : PairScore {
  double param = std::nan("");
};

EvalScores mean_of(const std::vector<const BinnedScore*>& scores) {
  EvalScores s;
  s.pairs = scores.size();
  for (const auto* p : scores) {
    s.psnr_db += p->psnr;
    s.ssim += p->ssim;
    s.identity_psnr_db += p->identity_psnr;
    s.identity_ssim += p->identity_ssim;
  }
  if (!scores.empty()) {
    const double n = double(scores.size());
    s.psnr_db /= n, s.ssim /= n, s.identity_psnr_db /= n, s.identity_ssim /= n;
  }
  return s;
}

std::uint64_t provenance_number(const model::Model& m, const char* key, const std::string& what) {
  const auto it = m.provenance().find(key);
  std::uint64_t v = 0;
  if (it == m.provenance().end() || !parse_unsigned(it->second, v)) {
    throw Error("model '" + m.source() + "' does not say how it was split (not trained by opforge train): give " + what +
                ", or --split all");
  }
  return v;
}

// The first numeric parameter of the pairs' one operator, if it varies.
std::string binned_parameter(const std::vector<datagen::DatasetRow>& rows, const std::vector<std::size_t>& picked) {
  if (picked.empty()) return {};
  const auto& first = rows[picked[0]];
  for (const auto& [name, value] : first.params.items()) {
    if (!value.is_number()) continue;
    bool varies = false, uniform = true;
    for (const auto i : picked) {
      const auto& r = rows[i];
      const auto it = r.params.find(name);
      if (r.op != first.op || it == r.params.end() || !it->is_number()) {
        uniform = false;
        break;
      }
      varies = varies || it->get<double>() != value.get<double>();
    }
    if (uniform && varies) return name;
  }
  return {};
}

}  // namespace

PairScore score_pair(const model::Model& m, model::Executor& executor, const Image& input, const Image& target,
                     std::span<const float> planes, const MetricOptions& metric) {
  Image out = executor.run(m, input, planes);
  cv::min(cv::max(out, 0.0), 1.0, out);
  const Metrics net = compare_images(out, target, metric);
  const Metrics identity = compare_images(input, target, metric);
  return {std::min(100.0, net.psnr_db), net.ssim, std::min(100.0, identity.psnr_db), identity.ssim};
}

MetricOptions pair_metric(const datagen::DatasetRow& row, int channels) {
  MetricOptions metric;
  if (row.op.rfind("sr_", 0) == 0) {
    metric.y_channel = channels == 3;
    const auto scale = row.params.find("scale");
    metric.shave = scale != row.params.end() && scale->is_number() ? static_cast<int>(std::lround(scale->get<double>())) : 0;
  }
  return metric;
}

std::vector<float> pair_planes(const model::Model& m, const datagen::DatasetRow& row) {
  if (m.spec().planes.empty()) return {};
  try {
    return m.planes_for(row.op, row.numbers());
  } catch (const Error& e) {
    throw Error("pair " + row.key + ": " + e.what());
  }
}

EvalResult evaluate(const model::Model& m, const EvalOptions& options) {
  const datagen::Dataset ds = datagen::Dataset::open(options.data);
  std::vector<std::size_t> picked;
  if (options.split == "all") {
    for (std::size_t i = 0; i < ds.rows().size(); ++i) picked.push_back(i);
  } else if (options.split == "val" || options.split == "train") {
    // (Not value_or: the model's provenance is read only when an option is absent.)
    const std::size_t held = options.validation_sources ? *options.validation_sources
                                                        : provenance_number(m, "train_validation_sources", "--validation-sources N");
    const std::uint64_t seed = options.seed ? *options.seed : provenance_number(m, "train_seed", "--seed S");
    const datagen::Split split = datagen::split_by_source(ds.rows(), held, seed);
    picked = options.split == "val" ? split.validation : split.train;
  } else {
    throw Error("split '" + options.split + "' is invalid; valid: val, train, all");
  }
  if (picked.empty()) throw Error("dataset '" + options.data.string() + "' has no pairs in split '" + options.split + "'");

  EvalResult result;
  const std::string param = binned_parameter(ds.rows(), picked);
  model::CpuExecutor executor;
  std::vector<BinnedScore> scores;
  for (const auto i : picked) {
    const auto& row = ds.rows()[i];
    Image input, target;
    try {
      input = read_image(options.data / row.input_file);
      target = read_image(options.data / row.output_file);
    } catch (const Error&) {
      ++result.skipped;
      continue;
    }
    const MetricOptions metric = pair_metric(row, input.channels());
    if (row.op.rfind("sr_", 0) == 0) {
      result.y_channel = true;
      result.shave = metric.shave;
    }
    BinnedScore s{score_pair(m, executor, input, target, pair_planes(m, row), metric)};
    if (!param.empty()) s.param = row.number(param);
    scores.push_back(s);
  }
  if (scores.empty()) throw Error("no pair of split '" + options.split + "' could be read");
  std::vector<const BinnedScore*> all;
  for (const auto& s : scores) all.push_back(&s);
  result.overall = mean_of(all);
  if (!param.empty()) {
    double lo = scores[0].param, hi = scores[0].param;
    for (const auto& s : scores) lo = std::min(lo, s.param), hi = std::max(hi, s.param);
    const bool log_scale = lo > 0 && hi / lo >= 10;
    const auto edge = [&](int k) {
      const double t = double(k) / kBins;
      return log_scale ? std::exp(std::log(lo) + t * (std::log(hi) - std::log(lo))) : lo + t * (hi - lo);
    };
    for (int k = 0; k < kBins; ++k) {
      EvalBin bin{param, k == 0 ? lo : edge(k), k + 1 == kBins ? hi : edge(k + 1), {}};
      std::vector<const BinnedScore*> members;
      for (const auto& s : scores) {
        if (s.param >= bin.lo && (s.param < bin.hi || (k + 1 == kBins && s.param <= bin.hi))) members.push_back(&s);
      }
      if (members.empty()) continue;
      bin.scores = mean_of(members);
      result.bins.push_back(bin);
    }
  }
  return result;
}

}  // namespace opforge::learner
