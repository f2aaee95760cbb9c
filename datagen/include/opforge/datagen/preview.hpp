#pragma once
// `opforge datagen preview`: a contact sheet of a recipe's first pairs, so a
// user can look at inputs, outputs and parameters before a long run.

#include <optional>

#include "opforge/core/image.hpp"
#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {

struct PreviewOptions {
  int pairs = 12;                     ///< how many pairs (1..200)
  int thumbnail_height = 160;         ///< pixels (32..1024)
  std::optional<SourceSpec> sources = std::nullopt;  ///< --sources: replaces the recipe's sources
};

/// One row per pair: input, output, then the key, operator, parameters and
/// source. Pairs are taken pair index first (pair 0 of every source, then
/// pair 1, …) so the sheet shows many sources. A pair that fails shows its
/// error instead of images. Returns an RGB image.
Image contact_sheet(const Recipe& recipe, const PreviewOptions& options);

}  // namespace opforge::datagen
