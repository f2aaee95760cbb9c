#include "datagen_report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace opforge::cli {

using datagen::RunSummary;
using datagen::ShardSpec;
namespace fs = std::filesystem;

ProgressDisplay::ProgressDisplay() : tty_(::isatty(STDERR_FILENO) == 1), last_(clock::now()) {}

void ProgressDisplay::operator()(const datagen::RunProgress& p) {
  const auto now = clock::now();
  if (!p.finished && std::chrono::duration<double>(now - last_).count() < (tty_ ? 0.25 : 10.0)) return;
  last_ = now;
  const double rate = p.seconds > 0 ? static_cast<double>(p.done) / p.seconds : 0;
  const double eta = rate > 0 ? static_cast<double>(p.planned - std::min(p.done, p.planned)) / rate : 0;
  char eta_text[32];
  std::snprintf(eta_text, sizeof eta_text, "%d:%02d", static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  char line[256];
  if (tty_) {
    const int width = 30;
    const int filled =
        p.planned ? static_cast<int>(width * static_cast<double>(p.done) / static_cast<double>(p.planned)) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::snprintf(line, sizeof line, "\r[%s] %zu/%zu pairs, %zu failed, %.2f pairs/s, ETA %s ", bar.c_str(), p.done,
                  p.planned, p.failed, rate, eta_text);
  } else {
    std::snprintf(line, sizeof line, "datagen: %zu/%zu pairs, %zu failed, %.2f pairs/s, ETA %s\n", p.done, p.planned,
                  p.failed, rate, eta_text);
  }
  std::cerr << line << (p.finished && tty_ ? "\n" : "") << std::flush;
}

std::string summary_line(const std::string& name, const RunSummary& s, const fs::path& out_dir, const ShardSpec& shard) {
  // Only the numbers go through a fixed buffer; names and paths may be long.
  char counts[160];
  const double rate = s.seconds > 0 ? static_cast<double>(s.written) / s.seconds : 0;
  char crashed[64] = "";
  if (s.crashed > 0) std::snprintf(crashed, sizeof crashed, " (%zu after crashing the process)", s.crashed);
  std::snprintf(counts, sizeof counts, ": %zu pairs written, %zu already complete, %zu failed%s in %.1f s (%.2f pairs/s) -> ",
                s.written, s.reused, s.failed, crashed, s.seconds, rate);
  std::string line = name;
  if (shard.count > 1) line += " shard " + std::to_string(shard.index) + "/" + std::to_string(shard.count);
  line += counts;
  line += out_dir.string();
  if (!s.finalized) line += " (merge when every shard is done: opforge datagen merge DIR)";
  return line;
}

}  // namespace opforge::cli
