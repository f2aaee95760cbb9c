#pragma once
// The generation run: recipe → dataset directory.
//
// Layout of DIR (docs/datagen.md):
//   metadata.jsonl            one row per pair, sorted by key; written last, so
//                             its presence means the dataset is complete
//   failures.jsonl            sources and pairs that failed, with the reason
//   dataset.json              summary: recipe, counts, format, WebDataset shards
//   README.md                 the dataset card: typed features, counts, citations, recipe
//   recipe.yaml               the recipe's exact text
//   input/BBB/KEY.png         BBB = source index / 1000 (keeps directories small)
//   output/BBB/KEY.png
//   webdataset/NAME-000000.tar  (when the recipe asks for it)
//   .opforge/                 run state: per-shard journals and commit markers
//
// Every file is written under a temporary name and renamed into place. Each
// shard appends a journal row only after both of a pair's files are in place,
// so --resume trusts exactly the rows whose files still hash as recorded and
// redoes the rest.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "opforge/datagen/plan.hpp"
#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {

/// Shard I of N owns pairs floor(I*T/N) .. floor((I+1)*T/N) - 1 of the T pairs in key order.
struct ShardSpec {
  int index = 0;  ///< 0-based
  int count = 1;
};

/// Where a run stands: reported after each pair and once at the end, from
/// one thread at a time.
struct RunProgress {
  std::size_t done = 0;     ///< pairs finished (written, kept by --resume, or failed)
  std::size_t planned = 0;  ///< pairs this shard owns
  std::size_t failed = 0;
  double seconds = 0;       ///< since the pairs started
  bool finished = false;    ///< the last report of the run
};

struct RunOptions {
  std::filesystem::path out_dir;
  ShardSpec shard = {};
  bool resume = false;
  std::optional<int> threads = std::nullopt;  ///< 1..1024 (check_thread_count); unset: all cores
  std::optional<SourceSpec> sources = std::nullopt;  ///< --sources: replaces the recipe's sources
  /// Called with each report (the CLI draws its progress bar from them); nullptr: none.
  std::function<void(const RunProgress&)> progress = nullptr;
  /// Fault injection for tests: called on the worker thread just before a
  /// pair's operator runs (a test raises SIGSEGV in it). nullptr otherwise.
  std::function<void(const SourceImage&, const PairPlan&)> before_operator = nullptr;
};

struct RunSummary {
  std::size_t planned = 0;   ///< pairs this shard owns
  std::size_t written = 0;   ///< pairs computed and written in this run
  std::size_t reused = 0;    ///< pairs found complete (--resume) and kept
  std::size_t failed = 0;    ///< pairs that failed (recorded in failures.jsonl)
  std::size_t crashed = 0;   ///< of `failed`: skipped because their operator crashed the process twice on the source
  std::vector<std::string> changed_sources;  ///< --resume: sources whose content changed; their pairs were redone
  double seconds = 0;
  bool finalized = false;    ///< metadata.jsonl was written (single shard, or merge)
};

/// Runs one shard of `recipe` into options.out_dir and, for an unsharded run,
/// finalizes the dataset. Failed sources and pairs are recorded and skipped.
/// Throws Error for unusable options or directories, and WriteError when a
/// file cannot be written (the run stops; --resume continues it).
RunSummary generate(const Recipe& recipe, const RunOptions& options);

/// After all N shards have committed: checks every shard's marker and every
/// pair's files, then writes metadata.jsonl, failures.jsonl, dataset.json and
/// the WebDataset shards. Throws Error naming the missing shards otherwise.
RunSummary merge(const std::filesystem::path& out_dir);

}  // namespace opforge::datagen
