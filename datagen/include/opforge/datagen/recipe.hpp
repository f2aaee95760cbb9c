#pragma once
// Dataset recipes: the YAML files in manifests/ that say which source images,
// which operator(s) with which parameter distributions, how many pairs per
// source, and how the pairs are stored. docs/datagen.md documents every key.
//
// A recipe is validated completely against the operator registry's ParamSpecs
// before any work starts; every error names the file, the line and the valid
// values ("fan_l0.yaml:14: parameter 'lamda' is not a parameter of l0_smooth;
// valid: lambda, kappa").

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "opforge/core/io.hpp"
#include "opforge/core/params.hpp"
#include "opforge/core/rng.hpp"
#include "opforge/operators/registry.hpp"

namespace opforge::datagen {

/// Where source images come from. Relative paths are relative to the recipe's
/// directory (or to the working directory for --sources on the command line).
struct SourceSpec {
  enum class Kind { directory, glob, list };
  Kind kind = Kind::directory;
  std::string path;        ///< the directory, the glob pattern or the list file
  bool recursive = false;  ///< directory only: descend into subdirectories
};

/// How one parameter is drawn for each pair.
struct Distribution {
  enum class Kind {
    fixed,        ///< always `values[0]`
    log_uniform,  ///< exp(U(ln lo, ln hi)); integers rounded half away from zero
    uniform,      ///< U(lo, hi); integers rounded half away from zero (Fan et al.'s rounding)
    int_uniform,  ///< each integer of lo..hi equally likely
    choice,       ///< one of `values`, with `weights` (equal when empty)
    sweep,        ///< pair j of every source takes values[j mod n] (Fan's "all seven fact values")
  };
  Kind kind = Kind::fixed;
  double lo = 0, hi = 0;
  std::vector<ParamValue> values = {};
  std::vector<double> weights = {};
};
std::string_view to_string(Distribution::Kind kind);

struct OperatorChoice {
  const OperatorEntry* entry = nullptr;
  double weight = 1;
  /// Only the parameters the recipe mentions; the rest take their defaults.
  std::vector<std::pair<std::string, Distribution>> params;
};

enum class OutputFormat { png8, png16, npy };
std::string_view to_string(OutputFormat format);
/// ".png" or ".npy".
std::string_view file_extension(OutputFormat format);

struct Recipe {
  std::filesystem::path file;       ///< where it was read from (for messages)
  std::string text;                 ///< the exact bytes read (hashed into provenance)
  std::string sha256;               ///< of `text`
  std::string name;                 ///< [A-Za-z0-9_-]+
  std::uint64_t seed = 0;
  std::vector<SourceSpec> sources;
  std::filesystem::path base_dir;   ///< relative source paths start here
  std::optional<int> resize_short_side;  ///< MATLAB bicubic resize before cropping
  std::optional<int> crop_width, crop_height;  ///< random crop per pair (seeded)
  int pairs_per_source = 1;
  std::vector<OperatorChoice> operators;
  OutputFormat format = OutputFormat::png8;
  std::optional<int> webdataset_shard_pairs;  ///< pairs per tar shard, when WebDataset output is on
  DecodeLimits limits;              ///< max_pixels: sources above it are recorded failures
};

/// Reads and validates a recipe. Throws Error "FILE:LINE: problem; valid: …".
Recipe load_recipe(const std::filesystem::path& file);
/// Same, from text; `file` names it in messages and sets the base directory.
Recipe parse_recipe(const std::string& text, const std::filesystem::path& file);

/// Draws one value of `spec`'s parameter for pair `pair_index` from `rng`
/// (sweep uses the pair index; everything else uses rng.uniform(0)). The value
/// is within the spec's range by construction of a validated recipe.
ParamValue draw(const Distribution& distribution, const ParamSpec& spec, const CounterRng& rng,
                std::uint64_t pair_index);

}  // namespace opforge::datagen
