#pragma once
// The dataset directory's run state (.opforge/): per-shard journals, commit
// markers and locks, the state every shard must agree on, and finalizing a
// dataset from its journals. Internal to datagen; generate.cpp runs the
// pipeline on top of it.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/datagen/generate.hpp"

namespace opforge::datagen {

inline constexpr const char* kStateDir = ".opforge";

std::filesystem::path rows_journal(const std::filesystem::path& dir, const ShardSpec& s);
std::filesystem::path failures_journal(const std::filesystem::path& dir, const ShardSpec& s);
std::filesystem::path done_marker(const std::filesystem::path& dir, const ShardSpec& s);
std::filesystem::path shard_lock(const std::filesystem::path& dir, const ShardSpec& s);
/// Fatal signals while this shard ran, one line each (crash_guard.hpp).
std::filesystem::path crash_journal(const std::filesystem::path& dir, const ShardSpec& s);
/// Each source as this shard read it: index, size, mtime, sha256 (so --resume
/// notices a source whose content changed and redoes its pairs).
std::filesystem::path sources_journal(const std::filesystem::path& dir, const ShardSpec& s);
/// Removes temporaries of this shard's run state left by a process killed
/// while it rewrote them (.shard-I-of-N.*.tmp-PID-K). Call with the shard's lock held.
void remove_stale_temporaries(const std::filesystem::path& dir, const ShardSpec& s);

void write_text(const std::filesystem::path& path, const std::string& text);
std::string read_text(const std::filesystem::path& path);
/// create_directories, or WriteError.
void make_directories(const std::filesystem::path& dir);

/// Calls fn(line, offset) for each complete line of a journal, streaming; a
/// torn last line (killed mid-append, no newline) is not a row.
template <typename Fn>
void for_each_line(const std::filesystem::path& path, Fn&& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path.string() + "'");
  std::string line;
  std::uint64_t offset = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it
    fn(line, offset);
    offset += line.size() + 1;
  }
}

/// Rows and failures are JSON on one line; a path with bytes that are not
/// UTF-8 is written with U+FFFD rather than failing the run.
std::string dump_line(const nlohmann::json& j);

/// Appends whole lines to a journal; a failed write is fatal (WriteError).
class Journal {
 public:
  explicit Journal(std::filesystem::path path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;
  void append(const std::string& line);

 private:
  [[noreturn]] void fail(int error);
  std::filesystem::path path_;
  int fd_ = -1;
};

/// An exclusive lock on a shard for the life of its run, so two processes
/// given the same shard (a duplicated array task, a manual rerun while the
/// first still runs) cannot interleave their journals. Throws Error naming
/// `what` when another process holds it.
class ShardLock {
 public:
  ShardLock(const std::filesystem::path& path, const std::string& what);
  ~ShardLock();
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;

 private:
  int fd_ = -1;
};

/// The state every shard of one dataset must agree on.
nlohmann::json state_of(const Recipe& recipe, const std::vector<SourceImage>& sources, const ShardSpec& shard);
/// Checks DIR's state against `state` (same recipe, sources, shard count), or
/// claims an empty or new DIR for it. Throws Error otherwise.
void check_or_write_state(const std::filesystem::path& dir, const Recipe& recipe, const nlohmann::json& state);

/// "000": the directory of source index / 1000.
std::string bucket_of(std::size_t source_index);

/// The fields of a journal row that --resume and merge rely on, checked: a
/// key of the form 000012_03, files named input|output/BBB/KEY.EXT inside the
/// dataset (nothing else: a hand-edited row cannot point elsewhere), 64-digit
/// hex hashes, the source's index and name. nullopt for anything else (a torn
/// or corrupt line). The parsed row itself is in `json`.
struct JournalRow {
  nlohmann::json json;
  std::string key, source, source_sha256;
  std::size_t source_index = 0;
  std::string input_file, output_file, input_sha256, output_sha256;
};
std::optional<JournalRow> parse_journal_row(std::string_view line);

/// A failure journal line: its JSON when it has the source and pair indices
/// failures.jsonl is sorted by, nullopt otherwise.
std::optional<nlohmann::json> parse_failure_row(std::string_view line);

/// A journal row is complete when both its files exist and hash as recorded.
bool row_is_complete(const std::filesystem::path& dir, const JournalRow& row);

/// Reads every shard's journal and writes metadata.jsonl (last),
/// failures.jsonl, dataset.json, recipe.yaml and the WebDataset shards.
/// `verify` re-hashes every pair's files.
RunSummary finalize(const std::filesystem::path& dir, bool verify);

}  // namespace opforge::datagen
