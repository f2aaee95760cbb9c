#pragma once
// Shared pieces of the benchmarks: the ~1 MP sample photo, and a reporter that
// remembers every run's time so that main() can print peer ratios measured in
// the same process.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "opforge/core/io.hpp"
#include "opforge/core/memory.hpp"

namespace opforge::bench {

inline Image sample_photo() {
  reuse_large_allocations();  // as the CLI does (see opforge/core/memory.hpp)
  return read_image(std::string(OPFORGE_BENCH_DATA_DIR) + "/samples/mit_adobe_000003_1024.jpg");
}

/// Registers `b` with `repetitions` repetitions and a "min" statistic.
inline benchmark::internal::Benchmark* repeated(benchmark::internal::Benchmark* b, int repetitions) {
  return b->Repetitions(repetitions)
      ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
      ->ReportAggregatesOnly(true);
}

/// Resets the process's peak resident set size (Linux ≥ 4.0).
inline void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

/// Current (VmRSS) or peak-since-reset (VmHWM) resident set size, in MiB.
inline double rss_mib(const char* field = "VmHWM") {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, field, std::strlen(field)) == 0 && std::sscanf(line + std::strlen(field), ": %lf kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib / 1024.0;
}

/// Measures how far the peak RSS of a region rises above the RSS at its
/// start (caches kept from earlier benchmarks are excluded).
class PeakRssProbe {
 public:
  PeakRssProbe() {
    reset_peak_rss();
    start_ = rss_mib("VmRSS");
  }
  double rise_mib() const { return rss_mib("VmHWM") - start_; }

 private:
  double start_;
};

class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      // The minimum over repetitions is the least noise-sensitive figure on
      // a shared 2-core machine; without repetitions, the single run.
      if (r.run_type == Run::RT_Iteration || r.aggregate_name == "min") {
        seconds_[r.run_name.function_name + "/" + r.run_name.args] = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  /// Seconds per iteration of benchmark "function/args" (e.g. "BM_x/2"), or 0.
  double seconds(const std::string& name) const {
    const auto it = seconds_.find(name);
    return it == seconds_.end() ? 0 : it->second;
  }
  void print_ratio(const std::string& label, const std::string& slow, const std::string& fast) const {
    const double a = seconds(slow), b = seconds(fast);
    if (a > 0 && b > 0) std::printf("%-58s %8.2fx   (%.4f s / %.4f s)\n", label.c_str(), a / b, a, b);
  }

 private:
  std::map<std::string, double> seconds_;
};

}  // namespace opforge::bench
