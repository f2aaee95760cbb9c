#pragma once
// Training a network on a datagen dataset (docs/training.md).
//
// A run is a pure function of the config, the dataset and the step count:
// the pair each step trains on and its crop and flip come from a
// counter-based generator keyed by the config's seed and the step, and every
// reduction has a fixed order, so a resumed run and a run on any number of
// threads give the same bytes as one uninterrupted run.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "opforge/learner/adam.hpp"

namespace opforge::learner {

/// The learning rate over a run: constant; `step` (multiplied by `factor`
/// at each step number in `at`, as PyTorch's MultiStepLR); or `cosine`
/// (from the base rate down to `final` over the run, as CosineAnnealingLR).
struct Schedule {
  enum class Kind { constant, step, cosine };
  Kind kind = Kind::constant;
  std::vector<std::int64_t> at;
  double factor = 0.1;
  double final = 0;
  /// The rate for step `step` (0-based) of `steps`.
  double rate(double base, std::int64_t step, std::int64_t steps) const;
};

/// The side of the square training crops: `lo` = `hi` for one size, a
/// range for a side drawn per step (training at random resolutions), 0 for
/// whole images. A crop never exceeds the images of its batch: a batch is
/// cut to the smallest height and width in it, each pair at its own offset.
struct CropSize {
  int lo = 256, hi = 256;
};

/// A stretch of the run with its own crop size (Chen et al.: whole 480p
/// images, then random resolutions).
struct Phase {
  std::int64_t steps = 0;
  CropSize crop;
};

/// What a parameter plane carries (model::InputPlane's mapping): an operator
/// parameter, its range and its scale.
struct PlaneConfig {
  std::string param;
  bool log_scale = false;
  double lo = 0, hi = 1;            ///< the parameter's range
  double min = 0, max = 1;          ///< the plane values it maps onto (Fan et al.: λ as is, WLS λ/50, ...)
};

struct TrainConfig {
  std::string network = "can24_an";   ///< network_spec's names
  /// "identity" (CAN: Chen et al.'s; SRCNN: Gaussian plus an identity path),
  /// "gaussian" (Dong et al.'s N(0, 0.001²)), "uniform" (PyTorch's default,
  /// Fan et al.'s networks) or a model file to fine-tune.
  std::string init = "identity";
  std::vector<PlaneConfig> planes;    ///< one per parameter plane (parameterized CAN) or weight input (Fan et al.)
  std::vector<std::string> operators; ///< a combined network's one-hot planes; empty: the dataset's, sorted
  std::string loss = "mse";           ///< "mse" or "l1"
  int loss_border = 0;                ///< pixels at each crop edge left out of the loss
  AdamConfig adam;
  Schedule schedule;
  std::int64_t steps = 1000;          ///< in all (the phases' sum)
  std::vector<Phase> phases;          ///< never empty once parsed
  int batch = 1;                      ///< pairs per step
  bool flips = true;                  ///< random horizontal flips
  std::size_t validation_sources = 1; ///< source images held out (split_by_source)
  std::int64_t validate_every = 100;  ///< steps; 0: only at the end
  std::int64_t checkpoint_every = 100;
  std::uint64_t seed = 1;
  std::string text;                   ///< the config file's bytes (its hash guards --resume)
};

/// Reads a training config (YAML). Throws Error naming the file, the key and
/// the valid values for anything unknown or out of range.
TrainConfig load_train_config(const std::filesystem::path& path);
TrainConfig parse_train_config(const std::string& yaml, const std::string& source);

struct TrainOptions {
  std::filesystem::path data;              ///< the dataset directory
  std::filesystem::path out;               ///< the model file to write
  bool resume = false;                     ///< continue from out's checkpoint
  std::optional<std::int64_t> steps;       ///< overrides the config's
  /// Set from a signal handler: the run writes a checkpoint after the
  /// current step and returns with `interrupted`.
  const std::atomic<bool>* stop = nullptr;
  /// Called after every step: step (1-based), loss, the latest validation PSNR (NaN before one).
  std::function<void(std::int64_t, double, double)> progress;
  /// When set, a JSON-lines log of the run: first the split
  /// ({"train": [keys], "validation": [keys]}), then one line per step
  /// ({"step", "key", "crop": [x, y, w, h], "flip", "loss", "learning_rate"};
  /// batches of several pairs give "keys", "crops" and "flips" as lists)
  /// and one per validation ({"step", "validation_psnr_db",
  /// "identity_psnr_db"}): the training curves, and enough to replay the
  /// run's exact data order elsewhere (bench/can_train_equivalence.py).
  std::filesystem::path log;
};

struct TrainSummary {
  std::int64_t steps = 0;             ///< steps done in all, resumed ones included
  double last_loss = 0;
  double validation_psnr_db = 0;      ///< of the final network
  double identity_psnr_db = 0;        ///< of the input itself, the baseline to beat
  std::size_t skipped_pairs = 0;      ///< missing or corrupt pair files
  bool interrupted = false;
};

/// The checkpoint that belongs to a model file: OUT.checkpoint.safetensors
/// (weights, Adam's state and the step; loadable as a model too).
std::filesystem::path checkpoint_path(const std::filesystem::path& out);

TrainSummary train(const TrainConfig& config, const TrainOptions& options);

}  // namespace opforge::learner
