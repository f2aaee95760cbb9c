// Training on a tiny generated dataset: the loss falls, a resumed run and a
// run on another thread count give the same bytes as one uninterrupted run,
// an interruption leaves a checkpoint, and bad configs, datasets and
// resumes are refused with one line.

#include "opforge/learner/trainer.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "opforge/core/io.hpp"
#include "opforge/datagen/dataset.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/recipe.hpp"
#include "opforge/learner/evaluate.hpp"
#include "opforge/learner/network.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "test_support.hpp"

namespace opforge::learner {
namespace {

namespace fs = std::filesystem;

// Three synthetic sources, l0_smooth at one lambda, 40x40 crops; one per
// test process (ctest runs the tests of this file side by side).
const fs::path& tiny_dataset() {
  static const fs::path dir = [] {
    const fs::path d = test::scratch_dir("trainer-dataset-" + std::to_string(::getpid()));
    fs::create_directories(d / "sources");
    for (const char* name : {"s0.png", "s1.png", "s2.png"}) {
      const int i = name[1] - '0';
      write_image(d / "sources" / name, test::synthetic_image(56 + 5 * i, 60, 3));
    }
    std::ofstream(d / "recipe.yaml") << "name: tiny_l0\nseed: 9\nsources:\n  directory: sources\npreprocess:\n  crop: 40\n"
                                        "pairs_per_source: 2\noperators:\n  - name: l0_smooth\n    params:\n      lambda: 0.02\n";
    datagen::generate(datagen::load_recipe(d / "recipe.yaml"), {.out_dir = d / "data", .threads = 2, .progress = false});
    return d / "data";
  }();
  return dir;
}

TrainConfig tiny_config(std::int64_t steps = 12, const std::string& learning_rate = "0.001") {
  std::string yaml = "network: can24_an\nadam: {learning_rate: ";
  yaml += learning_rate;
  yaml += "}\nsteps: ";
  yaml += std::to_string(steps);
  yaml += "\ncrop: 24\nvalidation_sources: 1\nvalidate_every: 0\ncheckpoint_every: 5\nseed: 3\n";
  return parse_train_config(yaml, "tiny.yaml");
}

TrainOptions options_for(const fs::path& out) {
  TrainOptions o;
  o.data = tiny_dataset();
  o.out = out;
  return o;
}

// Mean squared error of a model over the dataset's pairs.
double dataset_mse(const model::Model& m) {
  const auto ds = datagen::Dataset::open(tiny_dataset());
  double sum = 0;
  for (const auto& row : ds.rows()) {
    const Image out = model::CpuExecutor().run(m, read_image(tiny_dataset() / row.input_file));
    const Image target = read_image(tiny_dataset() / row.output_file);
    const double n = double(out.total()) * 3;
    sum += cv::norm(out, target, cv::NORM_L2SQR) / n;
  }
  return sum / double(ds.rows().size());
}

TEST(Trainer, TheLossFallsAndTheModelRunsInInfer) {
  const fs::path dir = test::scratch_dir("trainer-falls");
  std::vector<double> losses;
  auto options = options_for(dir / "m.safetensors");
  options.progress = [&](std::int64_t, double loss, double) { losses.push_back(loss); };
  const TrainSummary s = train(tiny_config(40, "0.0003"), options);
  EXPECT_EQ(s.steps, 40);
  EXPECT_EQ(losses.size(), 40u);
  EXPECT_FALSE(s.interrupted);
  const model::Model trained = model::Model::load(dir / "m.safetensors");
  const model::Model initial = identity_initialised(can_spec("can24_an"));
  // Better than the identity it started from, on the training pairs and on
  // the held-out source.
  EXPECT_LT(dataset_mse(trained), 0.9 * dataset_mse(initial));
  EXPECT_GT(s.validation_psnr_db, s.identity_psnr_db + 0.3);
  EXPECT_EQ(trained.provenance().at("trained_by"), "opforge train");
  EXPECT_EQ(trained.provenance().at("train_steps"), "40");
  EXPECT_TRUE(fs::exists(checkpoint_path(dir / "m.safetensors")));
}

TEST(Trainer, ResumedAndOtherThreadCountRunsGiveTheSameBytes) {
  const fs::path dir = test::scratch_dir("trainer-resume");
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    train(tiny_config(), options_for(dir / "straight.safetensors"));
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    train(tiny_config(), options_for(dir / "one_thread.safetensors"));
  }
  auto first = options_for(dir / "resumed.safetensors");
  first.steps = 7;  // stops between two checkpoints; its end writes one
  train(tiny_config(), first);
  auto rest = options_for(dir / "resumed.safetensors");
  rest.resume = true;
  EXPECT_EQ(train(tiny_config(), rest).steps, 12);
  const auto straight = read_file(dir / "straight.safetensors");
  EXPECT_EQ(read_file(dir / "one_thread.safetensors"), straight);
  // The same weights; only the provenance (none differs) could tell them apart.
  EXPECT_EQ(read_file(dir / "resumed.safetensors"), straight);
}

TEST(Trainer, LogsTheSplitEveryStepAndTheValidations) {
  const fs::path dir = test::scratch_dir("trainer-log");
  auto options = options_for(dir / "m.safetensors");
  options.log = dir / "log.jsonl";
  options.steps = 4;
  train(tiny_config(), options);
  std::ifstream in(dir / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 1u + 4u + 1u);  // the split, four steps, the final validation
  EXPECT_EQ(lines[0]["train"].size(), 4u);
  EXPECT_EQ(lines[0]["validation"].size(), 2u);
  const auto ds = datagen::Dataset::open(tiny_dataset());
  std::set<std::string> keys;
  for (const auto& r : ds.rows()) keys.insert(r.key);
  for (int s = 1; s <= 4; ++s) {
    const auto& e = lines[s];
    EXPECT_EQ(e["step"], s);
    EXPECT_TRUE(keys.count(e["key"].get<std::string>()));
    EXPECT_EQ(e["crop"][2], 24);
    EXPECT_GT(e["loss"].get<double>(), 0);
    EXPECT_DOUBLE_EQ(e["learning_rate"].get<double>(), 0.001);
  }
  EXPECT_TRUE(lines[5]["final"].get<bool>());
  // A resumed run appends to the log rather than starting it again.
  options.steps = 6;
  options.resume = true;
  train(tiny_config(), options);
  std::ifstream again(dir / "log.jsonl");
  std::size_t count = 0;
  for (std::string line; std::getline(again, line);) ++count;
  EXPECT_EQ(count, 6u + 2u + 1u);
}

TEST(Trainer, AnInterruptionWritesACheckpointToResumeFrom) {
  const fs::path dir = test::scratch_dir("trainer-interrupt");
  std::atomic<bool> stop{true};  // as if Ctrl-C came during the first step
  auto options = options_for(dir / "m.safetensors");
  options.stop = &stop;
  const TrainSummary s = train(tiny_config(), options);
  EXPECT_TRUE(s.interrupted);
  EXPECT_EQ(s.steps, 1);
  EXPECT_FALSE(fs::exists(dir / "m.safetensors"));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir / "m.safetensors")));
  // The checkpoint is itself a model file.
  EXPECT_EQ(model::Model::load(checkpoint_path(dir / "m.safetensors")).spec().architecture, "can24_an");
  auto again = options_for(dir / "m.safetensors");
  again.resume = true;
  EXPECT_EQ(train(tiny_config(), again).steps, 12);
}

TEST(Evaluate, ScoresTheHeldOutSourcesAsTrainingDidAndBinsTheParameter) {
  const fs::path dir = test::scratch_dir("evaluate");
  const TrainSummary s = train(tiny_config(10, "0.0003"), options_for(dir / "m.safetensors"));
  const model::Model m = model::Model::load(dir / "m.safetensors");
  const EvalResult val = evaluate(m, {.data = tiny_dataset()});  // the split from the model's provenance
  EXPECT_NEAR(val.overall.psnr_db, s.validation_psnr_db, 1e-9);
  EXPECT_NEAR(val.overall.identity_psnr_db, s.identity_psnr_db, 1e-9);
  EXPECT_EQ(val.overall.pairs, 2u);  // one source of three, two pairs each
  EXPECT_EQ(evaluate(m, {.data = tiny_dataset(), .split = "train"}).overall.pairs, 4u);
  EXPECT_TRUE(val.bins.empty());  // one lambda: nothing to bin
  // A published model has no split of its own: --split all, or give one.
  const model::Model published = model::Model::load(test::data_path("models/L0_smoothing.safetensors"));
  EXPECT_NE(test::error_of([&] { evaluate(published, {.data = tiny_dataset()}); }).find("does not say how it was split"),
            std::string::npos);
  EXPECT_EQ(evaluate(published, {.data = tiny_dataset(), .split = "all"}).overall.pairs, 6u);
  const EvalResult given = evaluate(published, {.data = tiny_dataset(), .validation_sources = 1, .seed = 3});
  EXPECT_EQ(given.overall.pairs, 2u);
  EXPECT_NEAR(given.overall.identity_psnr_db, val.overall.identity_psnr_db, 1e-12);  // the same held-out source
  EXPECT_NE(test::error_of([&] { evaluate(published, {.data = tiny_dataset(), .split = "test"}); }).find("valid: val, train, all"),
            std::string::npos);

  // Pairs whose lambda varies are also scored per bin of lambda (log-spaced).
  fs::create_directories(dir / "sources");
  for (const char* name : {"a.png", "b.png"}) write_image(dir / "sources" / name, test::synthetic_image(40, 44, 3));
  std::ofstream(dir / "recipe.yaml") << "name: varied\nseed: 4\nsources:\n  directory: sources\npairs_per_source: 5\n"
                                        "operators:\n  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n";
  datagen::generate(datagen::load_recipe(dir / "recipe.yaml"), {.out_dir = dir / "varied", .threads = 2, .progress = false});
  const EvalResult binned = evaluate(published, {.data = dir / "varied", .split = "all"});
  ASSERT_FALSE(binned.bins.empty());
  std::size_t in_bins = 0;
  for (std::size_t k = 0; k < binned.bins.size(); ++k) {
    EXPECT_EQ(binned.bins[k].param, "lambda");
    EXPECT_LT(binned.bins[k].lo, binned.bins[k].hi);
    if (k > 0) {
      EXPECT_LE(binned.bins[k - 1].hi, binned.bins[k].lo);
    }
    in_bins += binned.bins[k].scores.pairs;
  }
  EXPECT_EQ(in_bins, binned.overall.pairs);
  EXPECT_EQ(binned.overall.pairs, 10u);
}

TEST(Trainer, LearningRateSchedulesAsPyTorchs) {
  const auto step = parse_train_config("steps: 100\nschedule: {kind: step, at: [50, 80], factor: 0.5}\n", "s.yaml");
  EXPECT_DOUBLE_EQ(step.schedule.rate(0.01, 0, 100), 0.01);
  EXPECT_DOUBLE_EQ(step.schedule.rate(0.01, 49, 100), 0.01);
  EXPECT_DOUBLE_EQ(step.schedule.rate(0.01, 50, 100), 0.005);
  EXPECT_DOUBLE_EQ(step.schedule.rate(0.01, 99, 100), 0.0025);
  const auto cosine = parse_train_config("steps: 100\nschedule: {kind: cosine, final: 0.001}\n", "c.yaml");
  EXPECT_DOUBLE_EQ(cosine.schedule.rate(0.01, 0, 100), 0.01);
  EXPECT_NEAR(cosine.schedule.rate(0.01, 50, 100), 0.0055, 1e-15);  // halfway
  EXPECT_NEAR(cosine.schedule.rate(0.01, 100, 100), 0.001, 1e-15);
  EXPECT_NE(test::error_of([] { parse_train_config("schedule: {kind: step, at: [5, 3]}\n", "b.yaml"); }).find("must increase"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { parse_train_config("schedule: {kind: warmup}\n", "b.yaml"); }).find("valid: constant, step, cosine"),
            std::string::npos);
  // A schedule changes the run (it is part of the config, so of the hash).
  const fs::path dir = test::scratch_dir("trainer-schedule");
  train(tiny_config(6), options_for(dir / "a.safetensors"));
  train(parse_train_config(tiny_config(6).text + "schedule: {kind: cosine}\n", "c.yaml"), options_for(dir / "b.safetensors"));
  EXPECT_NE(read_file(dir / "a.safetensors"), read_file(dir / "b.safetensors"));
}

TEST(Trainer, RefusesBadConfigsDatasetsAndResumes) {
  const auto config_error = [](const std::string& yaml) {
    return test::error_of([&] { parse_train_config(yaml, "c.yaml"); });
  };
  EXPECT_NE(config_error("network: can24_an\nlearning_rate: 0.1\n").find("unknown key 'learning_rate'"), std::string::npos);
  EXPECT_NE(config_error("network: resnet\n").find("cannot be trained by this build yet; valid: can24_an"), std::string::npos);
  EXPECT_NE(config_error("loss: huber\n").find("valid: mse, l1"), std::string::npos);
  EXPECT_NE(config_error("steps: 0\n").find("steps must be a whole number in 1.."), std::string::npos);
  EXPECT_NE(config_error("adam: {learning_rate: -1}\n").find("adam.learning_rate must be a number"), std::string::npos);
  EXPECT_NE(config_error("flips: maybe\n").find("flips must be true or false"), std::string::npos);
  EXPECT_NE(config_error("steps: [1\n").find("not valid YAML"), std::string::npos);

  const fs::path dir = test::scratch_dir("trainer-bad");
  auto options = options_for(dir / "m.safetensors");
  options.resume = true;
  EXPECT_NE(test::error_of([&] { train(tiny_config(), options); }).find("there is no checkpoint"), std::string::npos);
  train(tiny_config(2), options_for(dir / "m.safetensors"));
  auto other = tiny_config(2);
  other = parse_train_config(other.text + "flips: false\n", "other.yaml");
  EXPECT_NE(test::error_of([&] { train(other, options); }).find("written with another training config"), std::string::npos);
  auto not_a_dataset = options_for(dir / "x.safetensors");
  not_a_dataset.data = dir;
  EXPECT_NE(test::error_of([&] { train(tiny_config(2), not_a_dataset); }).find("has no metadata.jsonl"), std::string::npos);
  EXPECT_NE(test::error_of([&] { parse_train_config(tiny_config(2).text + "seed: 4\n", "c.yaml"); }).find("is repeated"),
            std::string::npos);
  auto all_held_out = parse_train_config("validation_sources: 3\n", "c.yaml");
  EXPECT_NE(test::error_of([&] { train(all_held_out, options_for(dir / "y.safetensors")); }).find("leaves none to train on"),
            std::string::npos);
}

TEST(Trainer, SkipsAndCountsUnreadablePairs) {
  const fs::path dir = test::scratch_dir("trainer-skip");
  fs::copy(tiny_dataset(), dir / "data", fs::copy_options::recursive);
  const auto ds = datagen::Dataset::open(dir / "data");
  fs::remove(dir / "data" / ds.rows()[0].input_file);
  std::ofstream(dir / "data" / ds.rows()[3].output_file) << "corrupt";
  auto options = options_for(dir / "m.safetensors");
  options.data = dir / "data";
  const TrainSummary s = train(tiny_config(8), options);
  EXPECT_EQ(s.steps, 8);
  EXPECT_GE(s.skipped_pairs, 1u);  // the ones a step or the validation reached
  EXPECT_LE(s.skipped_pairs, 2u);
}

}  // namespace
}  // namespace opforge::learner
