#pragma once
// The one `--threads` rule for every command and library entry point: 1..1024
// worker threads, absent meaning every core. Results never depend on it.

#include <tbb/global_control.h>

#include <optional>

namespace opforge {

inline constexpr int kMaxThreads = 1024;

/// Throws Error "--threads N is out of range; valid: 1..1024 (default: all cores)".
void check_thread_count(int threads);

/// Limits TBB (operators and datagen's pipeline alike) to `threads` workers for
/// its lifetime, after check_thread_count; nullopt keeps the default.
class ThreadLimit {
 public:
  explicit ThreadLimit(std::optional<int> threads);
  /// The limit in force: `threads`, or every core.
  int workers() const;

 private:
  std::optional<tbb::global_control> control_;
};

}  // namespace opforge
