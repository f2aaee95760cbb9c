#include "opforge/core/threads.hpp"

#include <string>

#include "opforge/core/error.hpp"

namespace opforge {

void check_thread_count(int threads) {
  if (threads < 1 || threads > kMaxThreads) {
    throw Error("--threads " + std::to_string(threads) + " is out of range; valid: 1.." + std::to_string(kMaxThreads) +
                " (default: all cores)");
  }
}

ThreadLimit::ThreadLimit(std::optional<int> threads) {
  if (!threads) return;
  check_thread_count(*threads);
  control_.emplace(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(*threads));
}

int ThreadLimit::workers() const {
  return static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
}

}  // namespace opforge
