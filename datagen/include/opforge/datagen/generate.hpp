#pragma once
// The generation run: recipe → dataset directory.
//
// Layout of DIR (docs/datagen.md):
//   metadata.jsonl            one row per pair, sorted by key; written last, so
//                             its presence means the dataset is complete
//   failures.jsonl            sources and pairs that failed, with the reason
//   dataset.json              summary: recipe, counts, format, WebDataset shards
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

/// "I/N" with 0 ≤ I < N ≤ 100000; throws Error otherwise.
ShardSpec parse_shard(const std::string& text);

/// The shard index from the scheduler's environment when only the count is
/// given: Slurm array tasks use their rank among the array's IDs
/// (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _STEP, _COUNT, so `--array=1-7:2` maps to
/// 0..3); Kubernetes Indexed Jobs use JOB_COMPLETION_INDEX. Throws Error when
/// neither is set or the index does not fit `count`.
ShardSpec shard_from_environment(int count, const std::function<const char*(const char*)>& getenv_fn);

struct RunOptions {
  std::filesystem::path out_dir;
  ShardSpec shard = {};
  bool resume = false;
  std::optional<int> threads = std::nullopt;  ///< 1..1024 (check_thread_count); unset: all cores
  std::optional<SourceSpec> sources = std::nullopt;  ///< --sources: replaces the recipe's sources
  bool progress = true;                  ///< progress bar (TTY) or periodic lines on stderr
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

/// One line: "demo: 36 pairs written, 0 already complete, 0 failed in 8.2 s (4.4 pairs/s) -> out/demo".
std::string summary_line(const std::string& name, const RunSummary& summary, const std::filesystem::path& out_dir,
                         const ShardSpec& shard);

}  // namespace opforge::datagen
