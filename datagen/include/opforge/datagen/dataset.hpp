#pragma once
// A generated dataset as its readers see it: the row type of metadata.jsonl
// (written by the generator, read by the learner and by users' tools) and
// the reader of a finished dataset directory. This target links core only,
// not the operators: a trainer reads datasets without computing any.

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace opforge::datagen {

/// One (input, output) pair and its full provenance: one line of
/// metadata.jsonl (docs/datagen.md lists the fields).
struct DatasetRow {
  std::string key;                  ///< "SSSSSS_PP": source index, pair index
  std::string input_file;           ///< relative to the dataset directory
  std::string output_file;
  std::string op;                   ///< the operator's registry name
  std::string op_version;
  std::string kind;                 ///< "filter" or "degradation"
  nlohmann::json params = nlohmann::json::object();  ///< name → number or text, as sampled
  std::uint64_t seed = 0;
  std::string source;               ///< the source image's path as the recipe named it
  std::string source_sha256;
  std::size_t source_index = 0;
  int pair_index = 0;
  std::optional<std::array<int, 4>> crop;  ///< x, y, width, height within the source
  std::string input_sha256, output_sha256;
  std::string format;               ///< "png8", "png16" or "npy"
  std::string recipe;
  std::string opforge_version;

  nlohmann::json to_json() const;
  /// Throws Error naming the first missing or mistyped field.
  static DatasetRow from_json(const nlohmann::json& j);

  /// A numeric parameter's value; throws Error when the row has none.
  double number(const std::string& name) const;
  /// Every numeric parameter, by name (text-valued ones left out).
  std::map<std::string, double> numbers() const;
};

/// A finished dataset directory (metadata.jsonl present).
class Dataset {
 public:
  /// Reads DIR/metadata.jsonl. A malformed line is skipped and counted;
  /// a directory without metadata.jsonl (missing, or a sharded run not yet
  /// merged) throws Error saying so.
  static Dataset open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const std::vector<DatasetRow>& rows() const { return rows_; }
  std::size_t skipped_lines() const { return skipped_; }

 private:
  std::filesystem::path dir_;
  std::vector<DatasetRow> rows_;
  std::size_t skipped_ = 0;
};

/// Row indices on each side of a split.
struct Split {
  std::vector<std::size_t> train, validation;
};

/// A validation split by source image, never by pair: every pair of one
/// source lies on the same side, so crops of one photo never sit on both.
/// `validation_sources` sources are held out, chosen by a hash of `seed` and
/// each source's content (sha256), so the split does not depend on row
/// order, on sharding, or on the source's file name. Throws Error when the
/// dataset has too few sources to hold that many out and train on the rest.
Split split_by_source(const std::vector<DatasetRow>& rows, std::size_t validation_sources, std::uint64_t seed);

}  // namespace opforge::datagen
