#include "scheduler.hpp"

#include <cmath>
#include <cstdint>

#include "opforge/core/error.hpp"
#include "opforge/core/params.hpp"

namespace opforge::cli {

using datagen::ShardSpec;

ShardSpec parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  double i = -1, n = -1;
  if (slash == std::string::npos || !parse_number(text.substr(0, slash), i) || !parse_number(text.substr(slash + 1), n) ||
      i != std::floor(i) || n != std::floor(n) || n < 1 || n > 100000 || i < 0 || i >= n) {
    throw Error("--shard '" + text + "' is invalid; valid: I/N with 0 <= I < N <= 100000 (e.g. 0/4)");
  }
  return {static_cast<int>(i), static_cast<int>(n)};
}

ShardSpec shard_from_environment(int count, const std::function<const char*(const char*)>& getenv_fn) {
  if (count < 1 || count > 100000) throw Error("--shards " + std::to_string(count) + " is invalid; valid: 1..100000");
  // false when unset; a set variable that is not a non-negative integer is an error.
  const auto number = [&](const char* name, long long& out) {
    const char* v = getenv_fn(name);
    if (!v) return false;
    std::uint64_t value = 0;
    if (!parse_unsigned(v, value) || value > 1'000'000'000) {
      throw Error(std::string(name) + "='" + v + "' is malformed; valid: a non-negative integer (set by the scheduler)");
    }
    out = static_cast<long long>(value);
    return true;
  };
  long long id, index;
  if (number("SLURM_ARRAY_TASK_ID", id)) {
    long long min = 0, max = 0, step = 1, tasks = 0;
    if (!number("SLURM_ARRAY_TASK_MIN", min) || !number("SLURM_ARRAY_TASK_MAX", max)) {
      throw Error("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN/MAX are not; pass --shard I/N");
    }
    if (!number("SLURM_ARRAY_TASK_STEP", step) || step < 1) step = 1;
    if (!number("SLURM_ARRAY_TASK_COUNT", tasks)) tasks = (max - min) / step + 1;
    // The rank of this ID among min, min+step, …, max: the array may be sparse (1-7:2).
    if (tasks != (max - min) / step + 1 || (id - min) % step != 0) {
      throw Error("the Slurm array's IDs (" + std::to_string(min) + ".." + std::to_string(max) + ", " +
                  std::to_string(tasks) + " tasks) are not evenly spaced; pass --shard I/N explicitly");
    }
    const long long rank = (id - min) / step;
    if (tasks != count) {
      throw Error("--shards " + std::to_string(count) + " does not match the Slurm array's " + std::to_string(tasks) +
                  " tasks");
    }
    return {static_cast<int>(rank), count};
  }
  if (number("JOB_COMPLETION_INDEX", index)) {
    if (index < 0 || index >= count) {
      throw Error("JOB_COMPLETION_INDEX " + std::to_string(index) + " is out of range for --shards " +
                  std::to_string(count) + "; valid: 0.." + std::to_string(count - 1));
    }
    return {static_cast<int>(index), count};
  }
  throw Error("--shards " + std::to_string(count) +
              " needs the shard index from SLURM_ARRAY_TASK_ID (Slurm arrays) or JOB_COMPLETION_INDEX (Kubernetes "
              "Indexed Jobs); neither is set, so pass --shard I/N");
}

}  // namespace opforge::cli
