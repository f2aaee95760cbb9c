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
#include <map>
#include <set>

#include "opforge/core/io.hpp"
#include "opforge/core/safetensors.hpp"
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
    datagen::generate(datagen::load_recipe(d / "recipe.yaml"), {.out_dir = d / "data", .threads = 2});
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
  datagen::generate(datagen::load_recipe(dir / "recipe.yaml"), {.out_dir = dir / "varied", .threads = 2});
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

TEST(Trainer, EveryShippedConfigParses) {
  std::set<std::string> networks;
  for (const auto& e : fs::directory_iterator(fs::path(OPFORGE_SOURCE_DIR) / "manifests" / "train")) {
    SCOPED_TRACE(e.path().string());
    const TrainConfig c = load_train_config(e.path());
    networks.insert(c.network);
    EXPECT_GT(c.steps, 0);
  }
  EXPECT_EQ(networks, (std::set<std::string>{"can24_an", "can32_an_parameterized", "can32_an_combined", "srcnn_915",
                                             "fan_decoupled", "fan_cheap_tuning"}));
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
  EXPECT_NE(config_error("network: resnet\n").find("valid: can24_an, can32_an_parameterized, can32_an_combined, srcnn_915"),
            std::string::npos);
  EXPECT_NE(config_error("network: can24_an\nplanes: [{param: lambda, range: [0.1, 1]}]\n").find("has no parameter planes"),
            std::string::npos);
  EXPECT_NE(config_error("network: can32_an_parameterized\nplanes: [{param: lambda, scale: log, range: [0, 1]}]\n")
                .find("lo > 0 on a log scale"),
            std::string::npos);
  EXPECT_NE(config_error("operators: [l0_smooth]\n").find("applies to network can32_an_combined"), std::string::npos);
  EXPECT_NE(config_error("steps: 5\nphases: [{steps: 5}]\n").find("not both"), std::string::npos);
  EXPECT_NE(config_error("crop: [40, 20]\n").find("lo <= hi"), std::string::npos);
  EXPECT_NE(config_error("batch: 0\n").find("batch must be a whole number in 1..4096"), std::string::npos);
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

// A dataset of `recipe_ops` (the recipe's operators: block) on two or three
// synthetic sources, generated once per name.
fs::path generated(const std::string& name, const std::string& recipe_ops, int pairs_per_source, int sources = 3,
                   int channels = 3, int size = 40) {
  const fs::path d = test::scratch_dir("trainer-" + name + "-" + std::to_string(::getpid()));
  fs::create_directories(d / "sources");
  for (int i = 0; i < sources; ++i) {
    write_image(d / "sources" / ("s" + std::to_string(i) + ".png"), test::synthetic_image(size + 4 * i, size + 6, channels));
  }
  std::ofstream(d / "recipe.yaml") << "name: " << name << "\nseed: 5\nsources:\n  directory: sources\npairs_per_source: "
                                    << pairs_per_source << "\noperators:\n" << recipe_ops;
  datagen::generate(datagen::load_recipe(d / "recipe.yaml"), {.out_dir = d / "data", .threads = 2});
  return d / "data";
}

TEST(Trainer, TheParameterizedNetworkTakesEachRowsParameterAsItsPlane) {
  const fs::path data = generated("param", "  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n", 3);
  const fs::path dir = test::scratch_dir("trainer-param");
  const std::string yaml =
      "network: can32_an_parameterized\nplanes:\n  - {param: lambda, scale: log, range: [0.002, 0.2]}\n"
      "adam: {learning_rate: 0.0003}\nsteps: 150\ncrop: 24\nvalidation_sources: 1\nvalidate_every: 0\nseed: 3\n";
  TrainOptions options;
  options.data = data;
  options.out = dir / "m.safetensors";
  const TrainSummary s = train(parse_train_config(yaml, "p.yaml"), options);
  std::cout << "[ param ] held-out " << s.validation_psnr_db << " dB, identity " << s.identity_psnr_db << " dB\n";
  EXPECT_GT(s.validation_psnr_db, s.identity_psnr_db);
  const model::Model m = model::Model::load(dir / "m.safetensors");
  ASSERT_EQ(m.spec().planes.size(), 1u);
  const model::InputPlane& plane = m.spec().planes[0];
  EXPECT_EQ(plane.param, "lambda");
  EXPECT_TRUE(plane.log_scale);
  // log-uniform over [0.002, 0.2]: the geometric middle maps to the plane's middle.
  EXPECT_NEAR(m.planes_for("l0_smooth", {{"lambda", 0.02}})[0], 0.5f, 1e-6);
  EXPECT_FLOAT_EQ(m.planes_for("l0_smooth", {{"lambda", 0.2}})[0], 1.0f);
  EXPECT_NE(test::error_of([&] { m.planes_for("l0_smooth", {{"lambda", 0.5}}); }).find("valid: 0.002..0.2"), std::string::npos);
  EXPECT_NE(test::error_of([&] { m.planes_for("l0_smooth", {}); }).find("needs parameter 'lambda'"), std::string::npos);
  // Evaluation runs every pair with its own lambda and bins them.
  const EvalResult all = evaluate(m, {.data = data, .split = "all"});
  EXPECT_EQ(all.overall.pairs, 9u);
  EXPECT_FALSE(all.bins.empty());
  // Each pair's score is the network run on that pair's plane value.
  const auto ds = datagen::Dataset::open(data);
  const auto& row = ds.rows()[0];
  model::CpuExecutor executor;
  const Image input = read_image(data / row.input_file), target = read_image(data / row.output_file);
  const float planes[] = {plane.value_for(row.number("lambda"))};
  const Image expected = executor.run(m, input, planes);
  const Image via_row = executor.run(m, input, pair_planes(m, row));
  EXPECT_EQ(cv::norm(expected, via_row, cv::NORM_INF), 0.0);

  // A dataset whose parameter leaves the planes' range is refused before training.
  const std::string narrow =
      "network: can32_an_parameterized\nplanes:\n  - {param: lambda, scale: log, range: [0.01, 0.2]}\nsteps: 2\ncrop: 24\n";
  options.out = dir / "narrow.safetensors";
  const auto ds_min = std::min_element(ds.rows().begin(), ds.rows().end(), [](const auto& a, const auto& b) {
    return a.number("lambda") < b.number("lambda");
  });
  if (ds_min->number("lambda") < 0.01) {
    EXPECT_NE(test::error_of([&] { train(parse_train_config(narrow, "n.yaml"), options); }).find("outside the range"),
              std::string::npos);
  }
  // Without a mapping the parameterized network cannot know its planes.
  options.out = dir / "unmapped.safetensors";
  EXPECT_NE(test::error_of([&] {
              train(parse_train_config("network: can32_an_parameterized\nsteps: 2\ncrop: 24\n", "u.yaml"), options);
            }).find("carries no operator parameter"),
            std::string::npos);
}

TEST(Trainer, TheCombinedNetworkGetsOneOneHotPlanePerOperator) {
  const fs::path data = generated("combined",
                                  "  - name: l0_smooth\n    params:\n      lambda: 0.02\n"
                                  "  - name: rolling_guidance\n    params:\n      sigma_s: 3\n",
                                  4);
  const fs::path dir = test::scratch_dir("trainer-combined");
  TrainOptions options;
  options.data = data;
  options.out = dir / "m.safetensors";
  const std::string yaml = "network: can32_an_combined\nadam: {learning_rate: 0.001}\nsteps: 40\ncrop: 32\n"
                           "validation_sources: 1\nvalidate_every: 0\nseed: 3\n";
  train(parse_train_config(yaml, "c.yaml"), options);
  const model::Model m = model::Model::load(dir / "m.safetensors");
  // Better than the identity on the pairs it trained on (a held-out
  // synthetic source is too unlike the others for 40 steps to generalise to).
  const EvalResult trained = evaluate(m, {.data = data, .split = "train"});
  EXPECT_GT(trained.overall.psnr_db, trained.overall.identity_psnr_db + 1.0);
  // The operator plane steers the output: one input, two operators, two results.
  const auto ds = datagen::Dataset::open(data);
  const Image input = read_image(data / ds.rows()[0].input_file);
  model::CpuExecutor executor;
  EXPECT_GT(cv::norm(executor.run(m, input, m.operator_planes("l0_smooth")),
                     executor.run(m, input, m.operator_planes("rolling_guidance")), cv::NORM_INF),
            1e-3);
  EXPECT_TRUE(m.spec().one_hot_operators);
  ASSERT_EQ(m.spec().planes.size(), 2u);
  EXPECT_EQ(m.spec().planes[0].name, "l0_smooth");  // the dataset's operators, sorted
  EXPECT_EQ(m.spec().planes[1].name, "rolling_guidance");
  EXPECT_EQ(m.planes_for("rolling_guidance", {}), (std::vector<float>{0, 1}));
  // A list in the config fixes the order; a row of an operator not listed is refused.
  options.out = dir / "listed.safetensors";
  train(parse_train_config(yaml + "operators: [rolling_guidance, l0_smooth]\n", "c.yaml"), options);
  EXPECT_EQ(model::Model::load(dir / "listed.safetensors").spec().planes[0].name, "rolling_guidance");
  options.out = dir / "missing.safetensors";
  EXPECT_NE(test::error_of([&] { train(parse_train_config(yaml + "operators: [l0_smooth, wls_smooth]\n", "c.yaml"), options); })
                .find("has no operator 'rolling_guidance'"),
            std::string::npos);
}

TEST(Trainer, SrcnnLearnsLumaSuperResolutionFromTheBicubicStart) {
  const fs::path data = generated("srcnn", "  - name: sr_bicubic\n    params:\n      scale: 3\n      channels: y\n      mode: ilr\n",
                                  4, 3, 3, 60);
  const fs::path dir = test::scratch_dir("trainer-srcnn");
  TrainOptions options;
  options.data = data;
  options.out = dir / "m.safetensors";
  std::vector<double> losses;
  options.progress = [&](std::int64_t, double loss, double) { losses.push_back(loss); };
  const std::string yaml = "network: srcnn_915\nadam: {learning_rate: 0.0005}\nsteps: 60\ncrop: 33\nbatch: 4\n"
                           "loss_border: 6\nvalidation_sources: 1\nvalidate_every: 0\nseed: 3\n";
  const TrainSummary s = train(parse_train_config(yaml, "s.yaml"), options);
  const model::Model m = model::Model::load(dir / "m.safetensors");
  EXPECT_EQ(m.spec().architecture, "srcnn_915");
  EXPECT_EQ(m.spec().image_channels, 1);
  // It starts within noise of the identity (the bicubic input) and improves on it.
  const model::Model initial = gaussian_initialised(srcnn_spec(), 0.001, 3, true);
  const auto ds = datagen::Dataset::open(data);
  const auto& row = ds.rows()[0];
  const Image input = read_image(data / row.input_file);
  EXPECT_EQ(input.channels(), 1);
  EXPECT_LT(cv::norm(model::CpuExecutor().run(initial, input), input, cv::NORM_INF), 0.05);
  double first = 0, last = 0;
  for (int k = 0; k < 10; ++k) first += losses[k], last += losses[losses.size() - 1 - k];
  EXPECT_LT(last, first);
  EXPECT_GT(s.validation_psnr_db, s.identity_psnr_db);
  // Scored on luma with the border shaved by the scale, as the SR papers.
  const EvalResult val = evaluate(m, {.data = data});
  EXPECT_TRUE(val.y_channel);
  EXPECT_EQ(val.shave, 3);
  EXPECT_NEAR(val.overall.psnr_db, s.validation_psnr_db, 1e-9);
  // Crops too small for the loss border are refused.
  options.out = dir / "small.safetensors";
  EXPECT_NE(test::error_of([&] { train(parse_train_config("network: srcnn_915\ncrop: 12\nloss_border: 6\nsteps: 1\n", "s.yaml"), options); })
                .find("leaves nothing inside loss_border 6"),
            std::string::npos);
}

TEST(Trainer, FanNetworksLearnFromEachRowsParameterAndResumeBitIdentically) {
  const fs::path data = generated("fan", "  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n", 3);
  const fs::path dir = test::scratch_dir("trainer-fan");
  for (const std::string variant : {"fan_decoupled", "fan_cheap_tuning"}) {
    SCOPED_TRACE(variant);
    // Fan et al.'s normalisation of L0's lambda: as it is.
    const std::string yaml = "network: " + variant +
                             "\nplanes:\n  - {param: lambda, range: [0.002, 0.2], values: [0.002, 0.2]}\n"
                             "adam: {learning_rate: 0.01}\nsteps: 16\nbatch: 2\ncrop: 24\nvalidation_sources: 1\n"
                             "validate_every: 0\ncheckpoint_every: 8\nseed: 3\n";
    const TrainConfig config = parse_train_config(yaml, "f.yaml");
    EXPECT_EQ(config.init, "uniform");
    TrainOptions options;
    options.data = data;
    options.out = dir / (variant + ".safetensors");
    std::vector<double> losses;
    options.progress = [&](std::int64_t, double loss, double) { losses.push_back(loss); };
    train(config, options);
    ASSERT_EQ(losses.size(), 16u);
    EXPECT_LT(losses[12] + losses[13] + losses[14] + losses[15], losses[0] + losses[1] + losses[2] + losses[3]);
    const model::Model m = model::Model::load(options.out);
    EXPECT_EQ(m.spec().architecture, variant);
    EXPECT_EQ(m.spec().weight_inputs(), 1);
    EXPECT_EQ(m.spec().input_transform, model::InputTransform::fan_edges);
    EXPECT_FLOAT_EQ(m.planes_for("l0_smooth", {{"lambda", 0.05}})[0], 0.05f);  // as it is
    // The plain safetensors file holds the weight-learning network's A and b.
    const SafeTensors st = SafeTensors::load(options.out);
    EXPECT_EQ(st.contains("conv1/weights_from_params"), variant == "fan_decoupled");
    EXPECT_EQ(st.contains("conv19/InstanceNorm/gamma_from_params"), variant == "fan_cheap_tuning");
    const EvalResult all = evaluate(m, {.data = data, .split = "all"});
    EXPECT_EQ(all.overall.pairs, 9u);
    EXPECT_FALSE(all.bins.empty());
    // Stopped after 5 steps and resumed: the same bytes.
    TrainOptions first = options;
    first.out = dir / (variant + "_resumed.safetensors");
    first.progress = nullptr;
    first.steps = 5;
    train(config, first);
    first.steps.reset();
    first.resume = true;
    train(config, first);
    EXPECT_EQ(read_file(first.out), read_file(options.out));
  }
  EXPECT_NE(test::error_of([] { parse_train_config("network: fan_decoupled\n", "f.yaml"); }).find("needs planes"),
            std::string::npos);
}

TEST(Trainer, BatchesAndPhasesAreReproducibleAndResumable) {
  const std::string yaml = "network: can24_an\nadam: {learning_rate: 0.0005}\nbatch: 3\n"
                           "phases:\n  - {steps: 4, crop: 24}\n  - {steps: 6, crop: [16, 32]}\n"
                           "validation_sources: 1\nvalidate_every: 0\ncheckpoint_every: 4\nseed: 3\n";
  const TrainConfig config = parse_train_config(yaml, "b.yaml");
  EXPECT_EQ(config.steps, 10);
  const fs::path dir = test::scratch_dir("trainer-batch");
  auto options = options_for(dir / "straight.safetensors");
  options.log = dir / "log.jsonl";
  train(config, options);
  std::ifstream in(dir / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 1u + 10u + 1u);
  std::set<int> sides;
  for (int s = 1; s <= 10; ++s) {
    const auto& e = lines[s];
    ASSERT_EQ(e["keys"].size(), 3u);
    const int side = e["crops"][0][3].get<int>();
    for (const auto& crop : e["crops"]) {
      EXPECT_EQ(crop[3].get<int>(), side);  // one size per batch
      EXPECT_EQ(crop[2].get<int>(), side);
    }
    if (s <= 4) {
      EXPECT_EQ(side, 24);
    } else {
      EXPECT_GE(side, 16);
      EXPECT_LE(side, 32);
      sides.insert(side);
    }
  }
  EXPECT_GT(sides.size(), 1u);  // drawn per step
  // Four training pairs: a batch of three runs across epochs, each epoch a permutation.
  std::map<std::string, int> uses;
  for (int s = 1; s <= 4; ++s)
    for (const auto& k : lines[s]["keys"]) ++uses[k.get<std::string>()];
  EXPECT_EQ(uses.size(), 4u);
  for (const auto& [key, n] : uses) EXPECT_EQ(n, 3);  // 12 draws over 3 whole epochs
  auto first = options_for(dir / "resumed.safetensors");
  first.steps = 6;
  train(config, first);
  auto rest = options_for(dir / "resumed.safetensors");
  rest.resume = true;
  train(config, rest);
  EXPECT_EQ(read_file(dir / "resumed.safetensors"), read_file(dir / "straight.safetensors"));
}

}  // namespace
}  // namespace opforge::learner
