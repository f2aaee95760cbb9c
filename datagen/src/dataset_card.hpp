#pragma once
// The dataset card: README.md in a finished dataset directory, for people and
// for Hugging Face's loaders. Its YAML header declares every column's type,
// `params` as a struct holding every parameter of every operator the recipe
// can choose, so a loader need not infer the schema from the first rows (HF
// `imagefolder` reads only the first 10 MB of metadata.jsonl: a parameter of
// a rare operator that first appears later would break its cast).

#include <cstddef>
#include <string>

#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {

struct CardCounts {
  std::size_t sources = 0, pairs = 0, failed = 0;
};

/// README.md for a dataset made from `recipe`: YAML header (licence left for
/// the user, features, configs), then the counts, the operators with their
/// citations, the columns and the recipe itself.
std::string dataset_card(const Recipe& recipe, const CardCounts& counts);

}  // namespace opforge::datagen
