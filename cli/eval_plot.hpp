#pragma once
// `opforge eval --plot`: a PNG of the training curves (from `opforge train
// --log`) and of PSNR per parameter bin, each against the identity baseline.

#include <filesystem>

#include "opforge/learner/evaluate.hpp"

namespace opforge::cli {

/// Writes the plot (atomically, as every image opforge writes). `train_log`
/// may be empty: then only the per-parameter panel is drawn. Throws Error
/// for a log that cannot be read.
void write_eval_plot(const std::filesystem::path& out, const std::filesystem::path& train_log,
                     const learner::EvalResult& result);

}  // namespace opforge::cli
