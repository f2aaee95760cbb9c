#pragma once
// Which shard of a dataset this process makes: `--shard I/N`, or `--shards N`
// with the index from the cluster scheduler's environment.

#include <functional>
#include <string>

#include "opforge/datagen/generate.hpp"

namespace opforge::cli {

/// "I/N" with 0 ≤ I < N ≤ 100000; throws Error otherwise.
datagen::ShardSpec parse_shard(const std::string& text);

/// The shard index from the scheduler's environment when only the count is
/// given: Slurm array tasks use their rank among the array's IDs
/// (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _STEP, _COUNT, so `--array=1-7:2` maps to
/// 0..3); Kubernetes Indexed Jobs use JOB_COMPLETION_INDEX. Throws Error when
/// neither is set or the index does not fit `count`.
datagen::ShardSpec shard_from_environment(int count, const std::function<const char*(const char*)>& getenv_fn);

}  // namespace opforge::cli
