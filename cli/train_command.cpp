#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/params.hpp"
#include "opforge/learner/trainer.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

namespace {

constexpr const char* kTrainHelp =
    "\nCONFIG is a training config (manifests/train/, docs/training.md); DIR a dataset from `opforge datagen`.\n"
    "Every checkpoint_every steps, and on Ctrl-C, OUT's checkpoint (OUT.checkpoint.safetensors: weights,\n"
    "Adam's state, the step) is written atomically; --resume continues from it and gives the same bytes\n"
    "as an uninterrupted run, on any number of threads.\n"
    "\n"
    "Exit status: 0 trained; 130 interrupted (checkpoint written); 2 bad config, dataset or usage, or a\n"
    "loss that stopped being finite (the last checkpoint is kept); 1 internal error.\n";

std::atomic<bool> g_stop{false};

extern "C" void request_stop(int) { g_stop.store(true); }

// "[####....] step 120/1000  loss 0.00123  val 31.2 dB  2.1 steps/s  ETA 7:02"
// on a terminal; a plain line every ten seconds otherwise.
class TrainProgress {
 public:
  TrainProgress(std::int64_t total, bool enabled)
      : total_(total), enabled_(enabled), tty_(::isatty(STDERR_FILENO) == 1), start_(clock::now()), last_(start_) {}
  void update(std::int64_t step, double loss, double validation) {
    if (!enabled_) return;
    if (first_step_ < 0) first_step_ = step - 1;  // a resumed run's rate counts its own steps
    const auto now = clock::now();
    if (step < total_ && std::chrono::duration<double>(now - last_).count() < (tty_ ? 0.25 : 10.0)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? double(step - first_step_) / elapsed : 0;
    const std::string eta = time_left(double(step), double(total_), rate);
    char val[32] = "";
    if (!std::isnan(validation)) std::snprintf(val, sizeof val, "  val %.2f dB", validation);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s step %lld/%lld  loss %.6g%s  %.2f steps/s  ETA %s",
                   progress_bar(double(step), double(total_)).c_str(), static_cast<long long>(step),
                   static_cast<long long>(total_), loss, val, rate, eta.c_str());
    } else {
      std::fprintf(stderr, "train: step %lld/%lld, loss %.6g%s, %.2f steps/s, ETA %s\n", static_cast<long long>(step),
                   static_cast<long long>(total_), loss, val, rate, eta.c_str());
    }
    std::fflush(stderr);
  }
  void finish() const {
    if (enabled_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  using clock = std::chrono::steady_clock;
  std::int64_t total_;
  bool enabled_, tty_;
  clock::time_point start_, last_;
  std::int64_t first_step_ = -1;
};

}  // namespace

int train_command(const Args& args) {
  po::options_description opts("opforge train CONFIG --data DIR --out MODEL [options]");
  opts.add_options()("help,h", "this help")("data", po::value<std::string>(), "the dataset directory")(
      "out,o", po::value<std::string>(), "the model file to write (.safetensors)")(
      "resume", po::bool_switch(), "continue from OUT's checkpoint")(
      "steps", po::value<std::string>(), "train to this many steps in all (overrides the config)")(
      "log", po::value<std::string>(), "FILE: a JSON-lines log of every step (pair, crop, flip, loss) and validation")(
      "quiet,q", po::bool_switch(), "no progress display");
  add_threads_option(opts);
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"CONFIG"}, vm);
  if (vm.count("help")) {
    std::cout << opts << kTrainHelp;
    return 0;
  }
  if (!vm.count("data")) throw UsageError("--data DIR is required");
  if (!vm.count("out")) throw UsageError("--out MODEL.safetensors is required");
  const learner::TrainConfig config = learner::load_train_config(positional[0]);
  learner::TrainOptions options;
  options.data = vm["data"].as<std::string>();
  options.out = vm["out"].as<std::string>();
  if (options.out.extension() != ".safetensors") {
    throw UsageError("--out '" + options.out.string() + "' must end in .safetensors");
  }
  options.resume = vm["resume"].as<bool>();
  if (vm.count("log")) options.log = vm["log"].as<std::string>();
  if (vm.count("steps")) {
    std::uint64_t steps = 0;
    const std::string text = vm["steps"].as<std::string>();
    if (!parse_unsigned(text, steps) || steps < 1 || steps > 1'000'000'000) {
      throw UsageError("--steps '" + text + "' is invalid; valid: 1..1000000000");
    }
    options.steps = static_cast<std::int64_t>(steps);
  }
  TrainProgress progress(options.steps.value_or(config.steps), !vm["quiet"].as<bool>());
  options.progress = [&](std::int64_t step, double loss, double validation) { progress.update(step, loss, validation); };
  options.stop = &g_stop;
  struct sigaction action = {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  const auto start = std::chrono::steady_clock::now();
  const learner::TrainSummary s = learner::train(config, options);
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (s.interrupted) {
    std::cerr << "opforge train: interrupted at step " << s.steps << "; checkpoint written to "
              << learner::checkpoint_path(options.out).string() << " (continue with --resume)\n";
    return 130;
  }
  std::printf("train %s: %lld steps, loss %.6g, validation PSNR %.2f dB (the input itself: %.2f dB), %zu pair(s) "
              "skipped, %.1f s\n",
              options.out.string().c_str(), static_cast<long long>(s.steps), s.last_loss, s.validation_psnr_db,
              s.identity_psnr_db, s.skipped_pairs, seconds);
  return 0;
}

}  // namespace opforge::cli
