#include "scheduler.hpp"

#include <gtest/gtest.h>

#include <map>

#include "opforge/core/error.hpp"

namespace opforge::cli {
namespace {

TEST(Shards, ExplicitAndFromTheSchedulersEnvironment) {
  EXPECT_EQ(parse_shard("2/4").index, 2);
  EXPECT_EQ(parse_shard("2/4").count, 4);
  for (const char* bad : {"4/4", "-1/4", "1", "a/b", "1/0", "0.5/2"}) EXPECT_THROW(parse_shard(bad), Error) << bad;

  const auto env = [](std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> const char* {
      const auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  // --array=1-7:2 → IDs 1, 3, 5, 7; ID 5 is rank 2.
  const auto sparse = env({{"SLURM_ARRAY_TASK_ID", "5"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_MAX", "7"},
                           {"SLURM_ARRAY_TASK_STEP", "2"}, {"SLURM_ARRAY_TASK_COUNT", "4"}});
  EXPECT_EQ(shard_from_environment(4, sparse).index, 2);
  EXPECT_THROW(shard_from_environment(3, sparse), Error);  // count mismatch
  // --array=1,3,8: not evenly spaced, so the rank is unknowable from the environment.
  EXPECT_THROW(shard_from_environment(3, env({{"SLURM_ARRAY_TASK_ID", "3"}, {"SLURM_ARRAY_TASK_MIN", "1"},
                                              {"SLURM_ARRAY_TASK_MAX", "8"}, {"SLURM_ARRAY_TASK_COUNT", "3"}})),
               Error);
  EXPECT_EQ(shard_from_environment(5, env({{"JOB_COMPLETION_INDEX", "4"}})).index, 4);
  EXPECT_THROW(shard_from_environment(4, env({{"JOB_COMPLETION_INDEX", "4"}})), Error);
  EXPECT_THROW(shard_from_environment(4, env({})), Error);
  // A variable that is set but malformed is named as such, not as unset.
  for (const char* bad : {"abc", "-1", "1.5", ""}) {
    try {
      shard_from_environment(4, env({{"JOB_COMPLETION_INDEX", bad}}));
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("JOB_COMPLETION_INDEX='" + std::string(bad) + "' is malformed"),
                std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(shard_from_environment(4, env({{"SLURM_ARRAY_TASK_ID", "x"}})), Error);
}

}  // namespace
}  // namespace opforge::cli
