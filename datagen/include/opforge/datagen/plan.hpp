#pragma once
// What each pair of a dataset is, as a pure function of the recipe and the
// source list: its key, its seed, its operator and parameter values, its crop.
// Nothing here depends on threads, shards or earlier runs, which is what makes
// datasets byte-identical however they are produced.

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {

struct SourceImage {
  std::filesystem::path path;  ///< where to read it
  std::string name;            ///< as recorded in metadata: the path as the recipe (or --sources) spells it
  std::uint64_t id = 0;        ///< 64 bits of sha256(name): stable when other sources come or go
};

/// Every source image, in recipe order; directories and globs sorted by path,
/// duplicates dropped. Directory and glob sources take .png, .jpg, .jpeg and
/// .npy files; a list file names one image per line ('#' starts a comment).
/// Throws Error for a missing directory or list file, or when nothing is found.
std::vector<SourceImage> list_sources(const std::vector<SourceSpec>& specs, const std::filesystem::path& base_dir);

/// Parses a --sources argument (relative to the working directory): a
/// directory, one image, a glob pattern, or a list file.
SourceSpec source_spec_from_argument(const std::string& argument);

/// "000012" for (12, 6): `value` in decimal, zero-padded to `width` digits.
std::string zero_padded(std::size_t value, int width);

struct PairPlan {
  std::size_t source_index = 0;
  int pair_index = 0;
  std::string key;           ///< "000012_03": no dots (WebDataset), sorts in plan order
  std::uint64_t seed = 0;    ///< 53 bits, exact in JSON and JavaScript
  const OperatorChoice* op = nullptr;
  ParamValues values;        ///< drawn, then validated with defaults filled in
};

/// The plan of pair `pair_index` of source `source_index` (of `source_count`).
/// Throws Error when the drawn values fail the operator's validation.
PairPlan plan_pair(const Recipe& recipe, const SourceImage& source, std::size_t source_index, std::size_t source_count,
                   int pair_index);

/// A pair's parameters as its metadata row records them: every parameter by
/// name, integers as integers, booleans as booleans, choices and text as strings.
nlohmann::json params_json(const OperatorEntry& entry, const ParamValues& values);

/// The pair's seed: derive_seed(recipe seed, source id, pair index), top 53 bits.
std::uint64_t pair_seed(std::uint64_t recipe_seed, std::uint64_t source_id, int pair_index);

/// "000012_03": source index and pair index, zero-padded to widths fixed by
/// the counts (at least 6 and 2 digits), so keys sort in plan order.
std::string pair_key(std::size_t source_index, std::size_t source_count, int pair_index, int pairs_per_source);

struct CropWindow {
  int x = 0, y = 0, width = 0, height = 0;
};
/// The pair's random crop of a rows×cols image (uniform over all positions),
/// or nullopt when the recipe does not crop. Throws Error when the image is
/// smaller than the crop.
std::optional<CropWindow> crop_window(const Recipe& recipe, std::uint64_t seed, int rows, int cols);

struct PairImages {
  PairPlan plan;
  std::optional<CropWindow> crop;
  Image input, output;  ///< filter: (crop, op(crop)); degradation: (op(crop), target(crop))
};

/// Computes one pair from its (preprocessed) source image. Throws Error when
/// the plan, the crop or the operator fails.
PairImages make_pair(const Recipe& recipe, const SourceImage& source, std::size_t source_index,
                     std::size_t source_count, int pair_index, const Image& preprocessed);
/// The same, for a plan already made with plan_pair.
PairImages make_pair(const Recipe& recipe, PairPlan plan, const Image& preprocessed);

/// resize_short_side: the source resized (MATLAB bicubic) so its shorter
/// side has that length; unchanged when the recipe does not resize.
Image preprocess_source(const Recipe& recipe, const Image& source);

}  // namespace opforge::datagen
