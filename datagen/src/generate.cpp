#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/dataset.hpp"

#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <set>

#include "crash_guard.hpp"
#include "dataset_dir.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/sha256.hpp"
#include "opforge/core/threads.hpp"
#include "opforge/core/version.hpp"

namespace opforge::datagen {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::uint8_t> encode(const Image& img, OutputFormat format) {
  switch (format) {
    case OutputFormat::png8: return encode_png(img, 8);
    case OutputFormat::png16: return encode_png(img, 16);
    case OutputFormat::npy: return encode_npy(img);
  }
  return {};
}

// A source decoded once, on first use, for all of its pairs.
struct SourceSlot {
  std::mutex mutex;
  bool loaded = false;
  Image image;
  std::string sha256;
  std::string error;
};

// Size and modification time of a file as stat(2) sees it: --resume re-hashes
// a source only when these differ from what the sources journal recorded.
struct FileStamp {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

std::optional<FileStamp> stamp_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{static_cast<std::uint64_t>(st.st_size),
                   static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

// What a shard knows of its sources: the journal it appends to and the
// records of earlier runs.
struct SourceLedger {
  explicit SourceLedger(fs::path path) : journal(std::move(path)) {}
  Journal journal;
  std::mutex mutex;

  void record(std::size_t index, const FileStamp& stamp, const std::string& sha256) {
    const std::string line =
        dump_line(json{{"source_index", index}, {"size", stamp.size}, {"mtime_ns", stamp.mtime_ns}, {"sha256", sha256}});
    std::lock_guard lock(mutex);
    journal.append(line);
  }
};

void load_source(SourceSlot& slot, const Recipe& recipe, const SourceImage& source, std::size_t index,
                 SourceLedger& ledger) {
  std::lock_guard lock(slot.mutex);
  if (slot.loaded) return;
  slot.loaded = true;
  try {
    const std::optional<FileStamp> stamp = stamp_of(source.path);
    const std::vector<std::uint8_t> bytes = read_file(source.path);
    slot.sha256 = sha256_hex(bytes);
    if (stamp) ledger.record(index, *stamp, slot.sha256);
    slot.image = preprocess_source(recipe, decode_image(bytes, source.path.string(), recipe.limits));
  } catch (const WriteError&) {
    throw;
  } catch (const Error& e) {
    slot.error = e.what();
  } catch (const cv::Exception& e) {
    slot.error = "cannot read '" + source.path.string() + "': " + e.what();
  } catch (const std::bad_alloc&) {
    slot.error = "out of memory decoding '" + source.path.string() + "'";
  }
}

struct Task {
  std::size_t source_index = 0;
  int pair_index = 0;
  std::shared_ptr<SourceSlot> slot;
  std::string skip_reason = {};  ///< set: the pair is not run but recorded as failed (it crashed the process)
};

struct Outcome {
  std::string row = {};      // journal line on success
  std::string failure = {};  // failure line otherwise
  bool crashed = false;      // the failure: skipped after crashing the process
};

json failure_row(const std::string& key, const SourceImage& source, std::size_t source_index, int pair_index,
                 const std::string& stage, const std::string& error) {
  return json{{"key", key},         {"source", source.name}, {"source_index", source_index},
              {"pair_index", pair_index}, {"stage", stage}, {"error", error}};
}

// Clears the thread's crash context however process() leaves.
struct CrashContextScope {
  ~CrashContextScope() { clear_crash_context(); }
};

Outcome process(const Recipe& recipe, const std::vector<SourceImage>& sources, const Task& task, const fs::path& dir,
                SourceLedger& ledger, const CrashGuard& guard, const RunOptions& options) {
  const SourceImage& source = sources[task.source_index];
  const std::string key = pair_key(task.source_index, sources.size(), task.pair_index, recipe.pairs_per_source);
  if (!task.skip_reason.empty()) {
    return {.failure = dump_line(failure_row(key, source, task.source_index, task.pair_index, "crash", task.skip_reason)),
            .crashed = true};
  }
  std::string stage = "source";
  const CrashContextScope crash_scope;
  try {
    crash_context(guard, key, task.source_index, stage, "");
    load_source(*task.slot, recipe, source, task.source_index, ledger);
    if (!task.slot->error.empty()) {
      return {.failure = dump_line(failure_row(key, source, task.source_index, task.pair_index, stage, task.slot->error))};
    }
    stage = "operator";
    const PairPlan plan = plan_pair(recipe, source, task.source_index, sources.size(), task.pair_index);
    crash_context(guard, key, task.source_index, stage, plan.op->entry->name);
    if (options.before_operator) options.before_operator(source, plan);
    const PairImages pair = make_pair(recipe, plan, task.slot->image);
    const OperatorEntry& op = *pair.plan.op->entry;
    const auto& crop = pair.crop;

    stage = "write";
    crash_context(guard, key, task.source_index, stage, op.name);
    const std::vector<std::uint8_t> input_bytes = encode(pair.input, recipe.format);
    const std::vector<std::uint8_t> output_bytes = encode(pair.output, recipe.format);
    const std::string ext(file_extension(recipe.format));
    const std::string bucket = bucket_of(task.source_index);
    const std::string input_name = "input/" + bucket + "/" + key + ext;
    const std::string output_name = "output/" + bucket + "/" + key + ext;
    write_file_atomic(dir / input_name, input_bytes);
    write_file_atomic(dir / output_name, output_bytes);

    DatasetRow row;
    row.key = key;
    row.input_file = input_name;
    row.output_file = output_name;
    row.op = op.name;
    row.op_version = op.version;
    row.kind = to_string(op.kind);
    row.params = params_json(op, pair.plan.values);
    row.seed = pair.plan.seed;
    row.source = source.name;
    row.source_sha256 = task.slot->sha256;
    row.source_index = task.source_index;
    row.pair_index = task.pair_index;
    if (crop) row.crop = std::array<int, 4>{crop->x, crop->y, crop->width, crop->height};
    row.input_sha256 = sha256_hex(input_bytes);
    row.output_sha256 = sha256_hex(output_bytes);
    row.format = to_string(recipe.format);
    row.recipe = recipe.name;
    row.opforge_version = opforge_version();
    return {.row = dump_line(row.to_json())};
  } catch (const WriteError&) {
    throw;  // the disk is full or unwritable: stop, --resume continues
  } catch (const Error& e) {
    return {.failure = dump_line(failure_row(key, source, task.source_index, task.pair_index, stage, e.what()))};
  } catch (const cv::Exception& e) {
    return {.failure = dump_line(failure_row(key, source, task.source_index, task.pair_index, stage, e.what()))};
  } catch (const std::bad_alloc&) {
    return {.failure = dump_line(failure_row(key, source, task.source_index, task.pair_index, stage, "out of memory"))};
  }
}

// Why a pair is not run again, from the crash journal: its operator (or the
// source's decoding) crashed the process twice on its source.
std::string crash_verdict(const CrashHistory& history, const Recipe& recipe, const std::vector<SourceImage>& sources,
                          std::size_t s, int p) {
  const auto reason = [&](const std::string& what) -> std::string {
    const auto it = history.by_source.find({s, what});
    if (it == history.by_source.end() || it->second < 2) return "";
    std::string keys;
    for (const auto& k : history.keys.at({s, what})) keys += (keys.empty() ? "" : ", ") + k;
    const std::string signal = history.signal.at({s, what});
    return what.empty() ? "decoding this source crashed the process twice (" + signal + ", pairs " + keys +
                              "); its pairs are skipped"
                        : what + " crashed the process twice on this source (" + signal + ", pairs " + keys +
                              "); it is not run on this source again";
  };
  if (std::string r = reason(""); !r.empty()) return r;
  bool any = false;
  for (const auto& [where, count] : history.by_source) any = any || (where.first == s && count >= 2);
  if (!any) return "";
  try {
    return reason(plan_pair(recipe, sources[s], s, sources.size(), p).op->entry->name);
  } catch (const Error&) {
    return "";  // the pair fails on its own when it runs
  }
}

}  // namespace

RunSummary generate(const Recipe& recipe, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const fs::path& dir = options.out_dir;
  const ShardSpec shard = options.shard;
  const ThreadLimit thread_limit(options.threads);
  const std::vector<SourceImage> sources = options.sources
                                               ? list_sources({*options.sources}, fs::current_path())
                                               : list_sources(recipe.sources, recipe.base_dir);
  check_or_write_state(dir, recipe, state_of(recipe, sources, shard));

  const ShardLock lock(shard_lock(dir, shard),
                       "shard " + std::to_string(shard.index) + "/" + std::to_string(shard.count) + " of '" +
                           dir.string() + "'");
  remove_stale_temporaries(dir, shard);
  const fs::path journal_path = rows_journal(dir, shard);
  std::error_code ec;
  if (!options.resume && fs::exists(journal_path, ec)) {
    throw Error("'" + dir.string() + "' already holds pairs of shard " + std::to_string(shard.index) + "/" +
                std::to_string(shard.count) + "; pass --resume to continue it, or use a new --out");
  }
  // From here on the dataset is incomplete until it is finalized again.
  fs::remove(dir / "metadata.jsonl", ec);
  fs::remove(done_marker(dir, shard), ec);
  if (!options.resume) {
    fs::remove(crash_journal(dir, shard), ec);
    fs::remove(sources_journal(dir, shard), ec);
  }

  // Pairs whose journal row is intact, whose files still hash as recorded,
  // and whose source still holds the bytes it was made from.
  RunSummary summary;
  std::set<std::string> done;
  {
    std::map<std::size_t, std::pair<FileStamp, std::string>> recorded;  // source → what an earlier run read
    if (fs::exists(sources_journal(dir, shard), ec)) {
      for_each_line(sources_journal(dir, shard), [&](const std::string& line, std::uint64_t) {
        try {
          const json j = json::parse(line);
          recorded[j.at("source_index").get<std::size_t>()] = {
              {j.at("size").get<std::uint64_t>(), j.at("mtime_ns").get<std::int64_t>()}, j.at("sha256").get<std::string>()};
        } catch (const json::exception&) {
        }
      });
    }
    std::map<std::size_t, std::string> current;  // source → its sha256 now ("" when unreadable)
    const auto current_sha = [&](std::size_t s) -> const std::string& {
      auto it = current.find(s);
      if (it != current.end()) return it->second;
      std::string sha;
      const auto stamp = stamp_of(sources[s].path);
      const auto known = recorded.find(s);
      if (stamp && known != recorded.end() && known->second.first == *stamp) {
        sha = known->second.second;
      } else {
        try {
          sha = sha256_file_hex(sources[s].path);
        } catch (const Error&) {
        }
      }
      return current.emplace(s, std::move(sha)).first->second;
    };
    std::set<std::size_t> changed;
    AtomicFileWriter kept(journal_path);
    if (options.resume && fs::exists(journal_path, ec)) {
      for_each_line(journal_path, [&](const std::string& line, std::uint64_t) {
        const std::optional<JournalRow> row = parse_journal_row(line);
        if (!row) return;  // torn or corrupt: the pair is redone
        const std::size_t s = row->source_index;
        if (s >= sources.size() || row->source != sources[s].name || !row_is_complete(dir, *row)) return;
        if (current_sha(s) != row->source_sha256) {
          changed.insert(s);
          return;
        }
        if (done.insert(row->key).second) kept.write(line + "\n");
      });
    }
    kept.commit();
    for (const std::size_t s : changed) summary.changed_sources.push_back(sources[s].name);
  }
  write_text(failures_journal(dir, shard), "");
  const CrashHistory crashes = read_crash_history(crash_journal(dir, shard));

  // Shard I owns a contiguous run of pairs in key order: balanced to one pair
  // whatever the number of sources, and each source is decoded by at most
  // two shards.
  const std::uint64_t pairs = static_cast<std::uint64_t>(recipe.pairs_per_source);
  const std::uint64_t total = sources.size() * pairs;
  const std::uint64_t first = total * static_cast<std::uint64_t>(shard.index) / static_cast<std::uint64_t>(shard.count);
  const std::uint64_t last = total * static_cast<std::uint64_t>(shard.index + 1) / static_cast<std::uint64_t>(shard.count);
  summary.planned = static_cast<std::size_t>(last - first);
  summary.reused = done.size();

  Journal rows(journal_path), failures(failures_journal(dir, shard));
  SourceLedger ledger(sources_journal(dir, shard));
  const CrashGuard crash_guard(crash_journal(dir, shard));
  const int workers = thread_limit.workers();
  const auto report = [&, started = std::chrono::steady_clock::now()](bool finished) {
    if (!options.progress) return;
    options.progress({.done = summary.reused + summary.written + summary.failed,
                      .planned = summary.planned,
                      .failed = summary.failed,
                      .seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                      .finished = finished});
  };

  std::uint64_t next = first;
  std::shared_ptr<SourceSlot> slot;
  std::size_t slot_source = SIZE_MAX;
  tbb::parallel_pipeline(
      static_cast<std::size_t>(2 * std::max(workers, 1)),
      tbb::make_filter<void, Task>(tbb::filter_mode::serial_in_order,
                                   [&](tbb::flow_control& fc) -> Task {
                                     while (next < last) {
                                       const auto s = static_cast<std::size_t>(next / pairs);
                                       const auto p = static_cast<int>(next % pairs);
                                       ++next;
                                       if (done.count(pair_key(s, sources.size(), p, recipe.pairs_per_source))) continue;
                                       if (s != slot_source) {
                                         slot = std::make_shared<SourceSlot>();  // the previous source's memory goes with its last pair
                                         slot_source = s;
                                         // Once per source, not per pair: where its pairs' files go.
                                         make_directories(dir / "input" / bucket_of(s));
                                         make_directories(dir / "output" / bucket_of(s));
                                       }
                                       return Task{s, p, slot, crashes.by_source.empty()
                                                                   ? std::string()
                                                                   : crash_verdict(crashes, recipe, sources, s, p)};
                                     }
                                     slot.reset();
                                     fc.stop();
                                     return {};
                                   }) &
          tbb::make_filter<Task, Outcome>(tbb::filter_mode::parallel,
                                          [&](const Task& task) { return process(recipe, sources, task, dir, ledger, crash_guard, options); }) &
          tbb::make_filter<Outcome, void>(tbb::filter_mode::serial_in_order, [&](const Outcome& outcome) {
            if (!outcome.row.empty()) {
              rows.append(outcome.row);
              ++summary.written;
            } else {
              failures.append(outcome.failure);
              ++summary.failed;
              summary.crashed += outcome.crashed;
            }
            report(false);
          }));
  report(true);

  const json marker = {{"shard", shard.index}, {"shards", shard.count}, {"pairs", summary.reused + summary.written},
                       {"failed", summary.failed}};
  write_text(done_marker(dir, shard), marker.dump() + "\n");
  if (shard.count == 1) summary.finalized = finalize(dir, false).finalized;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

RunSummary merge(const fs::path& out_dir) {
  const auto start = std::chrono::steady_clock::now();
  RunSummary summary = finalize(out_dir, true);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace opforge::datagen
