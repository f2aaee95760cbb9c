#pragma once
// How well a model approximates its operator on a dataset: PSNR and SSIM of
// its output against the targets, beside the same for the input itself (the
// identity baseline), overall and per bin of the operator's parameter.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "opforge/core/metrics.hpp"
#include "opforge/datagen/dataset.hpp"
#include "opforge/model/executor.hpp"
#include "opforge/model/model.hpp"

namespace opforge::learner {

struct EvalOptions {
  std::filesystem::path data;
  /// "val" (the held-out sources), "train" or "all". val and train need the
  /// split: from the model's provenance when opforge trained it, or given.
  std::string split = "val";
  std::optional<std::size_t> validation_sources = std::nullopt;
  std::optional<std::uint64_t> seed = std::nullopt;
};

struct EvalScores {
  std::size_t pairs = 0;
  double psnr_db = 0, ssim = 0;                    ///< means over pairs
  double identity_psnr_db = 0, identity_ssim = 0;  ///< of the input itself
};

struct EvalBin {
  std::string param;
  double lo = 0, hi = 0;  ///< [lo, hi), the last bin closed
  EvalScores scores;
};

struct EvalResult {
  EvalScores overall;
  std::vector<EvalBin> bins;   ///< when the pairs' parameter takes several values
  std::size_t skipped = 0;     ///< pairs whose files could not be read
  bool y_channel = false;      ///< super-resolution pairs: luma only, border shaved
  int shave = 0;
};

/// One pair's scores: the model's output (clipped to [0, 1]) and the input
/// itself against the target; an exact match's infinite PSNR counts as
/// 100 dB. The one scoring rule of `evaluate` and the trainer's validation.
struct PairScore {
  double psnr = 0, ssim = 0, identity_psnr = 0, identity_ssim = 0;
};
PairScore score_pair(const model::Model& model, model::Executor& executor, const Image& input, const Image& target,
                     std::span<const float> planes = {}, const MetricOptions& metric = {});

/// How a dataset row is scored: super-resolution rows (operator `sr_*`) on
/// luma (computed from RGB, as is for 1-channel pairs) with the border
/// shaved by the scale, as the SR papers report; everything else on all
/// channels.
MetricOptions pair_metric(const datagen::DatasetRow& row, int channels);
/// The constant planes a row's pair runs with: none for a model without
/// planes, else the row's operator and parameters (Model::planes_for).
std::vector<float> pair_planes(const model::Model& model, const datagen::DatasetRow& row);

/// Throws Error for a dataset that cannot be read, a split that cannot be
/// made, or no pair left to evaluate.
EvalResult evaluate(const model::Model& model, const EvalOptions& options);

}  // namespace opforge::learner
