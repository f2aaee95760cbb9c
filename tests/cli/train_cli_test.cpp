// `opforge train` from the command line: a dataset from `opforge datagen`,
// a model `opforge infer` runs, Ctrl-C leaving a checkpoint (exit 130) that
// --resume continues to the same bytes, and one line for bad requests.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "opforge/core/io.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::Result;
using test::run;

fs::path make_dataset(const fs::path& dir) {
  fs::create_directories(dir / "sources");
  for (const char* name : {"a.png", "b.png"}) write_image(dir / "sources" / name, test::synthetic_image(50, 47 + name[0] - 'a', 3));
  std::ofstream(dir / "recipe.yaml") << "name: l0\nseed: 1\nsources:\n  directory: sources\npreprocess:\n  crop: 32\n"
                                        "pairs_per_source: 2\noperators:\n  - name: l0_smooth\n    params:\n      lambda: 0.02\n";
  EXPECT_EQ(run({"datagen", (dir / "recipe.yaml").string(), "--out", (dir / "data").string(), "-q"}, dir).status, 0);
  std::ofstream(dir / "train.yaml") << "network: can24_an\nadam: {learning_rate: 0.0003}\nsteps: 6\ncrop: 16\n"
                                       "validation_sources: 1\nvalidate_every: 3\ncheckpoint_every: 2\nseed: 2\n";
  return dir / "data";
}

TEST(TrainCli, TrainsAModelThatInferRuns) {
  const fs::path dir = test::scratch_dir("train-cli");
  const fs::path data = make_dataset(dir);
  const Result r = run({"train", (dir / "train.yaml").string(), "--data", data.string(), "--out",
                        (dir / "m.safetensors").string(), "--threads", "2", "--log", (dir / "log.jsonl").string()},
                       dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("6 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation PSNR"), std::string::npos) << r.out;
  const Result info = run({"model", "info", (dir / "m.safetensors").string()}, dir);
  EXPECT_NE(info.out.find("can24_an"), std::string::npos) << info.out;
  const Result infer = run({"infer", (dir / "m.safetensors").string(), (dir / "sources" / "a.png").string(),
                            (dir / "a_out.png").string()},
                           dir);
  EXPECT_EQ(infer.status, 0) << infer.err;
  EXPECT_EQ(read_image(dir / "a_out.png").size(), cv::Size(47, 50));
  // opforge eval: the held-out source by default, the identity baseline beside it.
  const Result eval = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--json"}, dir);
  ASSERT_EQ(eval.status, 0) << eval.err;
  const auto j = nlohmann::json::parse(eval.out);
  for (const char* key : {"psnr_db", "ssim", "identity_psnr_db", "identity_ssim", "bins"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["pairs"], 2);  // one of the two sources is held out
  EXPECT_EQ(j["split"], "val");
  const Result text = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--split", "all"}, dir);
  EXPECT_NE(text.out.find("4 pairs, 0 skipped"), std::string::npos) << text.out;
  const Result bad = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--split", "test"}, dir);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("valid: val, train, all"), std::string::npos) << bad.err;
  // The plot: PSNR per parameter; with the training log, the curves beside it.
  const Result plot = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--plot",
                           (dir / "eval.png").string()},
                          dir);
  ASSERT_EQ(plot.status, 0) << plot.err;
  EXPECT_EQ(read_image(dir / "eval.png").size(), cv::Size(640, 420));
  const Result curves = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--plot",
                             (dir / "curves.png").string(), "--train-log", (dir / "log.jsonl").string()},
                            dir);
  ASSERT_EQ(curves.status, 0) << curves.err;
  const Image drawn = read_image(dir / "curves.png");
  EXPECT_EQ(drawn.size(), cv::Size(3 * 640, 420));
  EXPECT_GT(cv::norm(drawn, cv::Mat(drawn.size(), drawn.type(), cv::Scalar::all(1.0)), cv::NORM_INF), 0.5);  // not blank
  const Result no_plot = run({"eval", (dir / "m.safetensors").string(), "--data", data.string(), "--train-log",
                              (dir / "log.jsonl").string()},
                             dir);
  EXPECT_EQ(no_plot.status, 2);
  EXPECT_NE(no_plot.err.find("--train-log goes with --plot"), std::string::npos) << no_plot.err;
}

TEST(TrainCli, CtrlCWritesACheckpointAndResumeFinishesTheSameModel) {
  const fs::path dir = test::scratch_dir("train-cli-sigint");
  const fs::path data = make_dataset(dir);
  const std::string config = (dir / "train.yaml").string();
  // Long enough (a few seconds) for the signal to arrive mid-run.
  const std::vector<std::string> common = {"train", config, "--data", data.string(), "--steps", "300", "-q", "--out"};
  const auto with = [&](const std::string& out, std::vector<std::string> extra = {}) {
    auto args = common;
    args.push_back((dir / out).string());
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  ASSERT_EQ(run(with("straight.safetensors"), dir).status, 0);
  // SIGINT after 0.3 s: the run stops after its current step with a checkpoint.
  const Result interrupted = run(with("m.safetensors"), dir, "(sleep 0.3; kill -INT $$) & ");
  if (interrupted.status == 0) GTEST_SKIP() << "the run finished before the signal came";
  EXPECT_EQ(interrupted.status, 130) << interrupted.err;
  EXPECT_NE(interrupted.err.find("continue with --resume"), std::string::npos) << interrupted.err;
  EXPECT_FALSE(fs::exists(dir / "m.safetensors"));
  const Result resumed = run(with("m.safetensors", {"--resume"}), dir);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(read_file(dir / "m.safetensors"), read_file(dir / "straight.safetensors"));
}

TEST(TrainCli, BadRequestsGetOneLine) {
  const fs::path dir = test::scratch_dir("train-cli-bad");
  const fs::path data = make_dataset(dir);
  std::ofstream(dir / "bad.yaml") << "network: can24_an\nlearnin_rate: 1\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"train", (dir / "bad.yaml").string(), "--data", data.string(), "--out", "m.safetensors"}, "unknown key 'learnin_rate'"},
      {{"train", (dir / "train.yaml").string(), "--out", "m.safetensors"}, "--data DIR is required"},
      {{"train", (dir / "train.yaml").string(), "--data", data.string()}, "--out MODEL.safetensors is required"},
      {{"train", (dir / "train.yaml").string(), "--data", data.string(), "--out", "m.png"}, "must end in .safetensors"},
      {{"train", (dir / "train.yaml").string(), "--data", dir.string(), "--out", "m.safetensors"}, "has no metadata.jsonl"},
      {{"train", (dir / "train.yaml").string(), "--data", data.string(), "--out", "m.safetensors", "--resume"}, "no checkpoint"},
      {{"train", (dir / "train.yaml").string(), "--data", data.string(), "--out", "m.safetensors", "--steps", "0"}, "valid: 1..1000000000"},
  };
  for (const auto& [args, part] : cases) {
    const Result r = run(args, dir);
    EXPECT_EQ(r.status, 2) << part << ": " << r.err;
    EXPECT_EQ(r.err_lines(), 1) << r.err;
    EXPECT_NE(r.err.find(part), std::string::npos) << part << " not in: " << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "m.safetensors"));
}

}  // namespace
}  // namespace opforge
