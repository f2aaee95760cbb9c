#pragma once
// What `opforge datagen` tells its user: a progress bar on a terminal (lines
// every 10 s otherwise) and the one-line summary.

#include <chrono>
#include <filesystem>
#include <string>

#include "opforge/datagen/generate.hpp"

namespace opforge::cli {

/// Draws RunProgress reports on stderr: a bar redrawn at most 4 times a
/// second on a terminal, otherwise a line every 10 s (logs of cluster jobs).
class ProgressDisplay {
 public:
  ProgressDisplay();
  void operator()(const datagen::RunProgress& progress);

 private:
  using clock = std::chrono::steady_clock;
  bool tty_;
  clock::time_point last_;
};

/// One line: "demo: 36 pairs written, 0 already complete, 0 failed in 8.2 s (4.4 pairs/s) -> out/demo".
std::string summary_line(const std::string& name, const datagen::RunSummary& summary,
                         const std::filesystem::path& out_dir, const datagen::ShardSpec& shard);

}  // namespace opforge::cli
