#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eval_plot.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/params.hpp"
#include "opforge/learner/evaluate.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

namespace {

nlohmann::json scores_json(const learner::EvalScores& s) {
  return {{"psnr_db", s.psnr_db}, {"ssim", s.ssim}, {"identity_psnr_db", s.identity_psnr_db},
          {"identity_ssim", s.identity_ssim}, {"pairs", s.pairs}};
}

}  // namespace

int eval_command(const Args& args) {
  po::options_description opts("opforge eval MODEL --data DIR [options]");
  opts.add_options()("help,h", "this help")("data", po::value<std::string>(), "the dataset directory")(
      "split", po::value<std::string>()->default_value("val"), "val (the held-out sources), train or all")(
      "validation-sources", po::value<std::string>(), "sources held out (default: as the model was trained)")(
      "seed", po::value<std::string>(), "the split's seed (default: as the model was trained)")(
      "json", "print one JSON object")(
      "plot", po::value<std::string>(), "FILE.png: a plot of PSNR per parameter bin against the identity baseline")(
      "train-log", po::value<std::string>(),
      "FILE: the `opforge train --log` of the model, drawn in the plot (loss and held-out PSNR per step)");
  add_threads_option(opts);
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"MODEL"}, vm);
  if (vm.count("help")) {
    std::cout << opts
              << "\nPSNR and SSIM of the model's output (clipped to [0,1]) against the targets, beside the input's\n"
                 "own (the identity baseline); per bin of the operator's parameter when it varies. Super-resolution\n"
                 "pairs are scored on luma with the border shaved by the scale.\n";
    return 0;
  }
  if (!vm.count("data")) throw UsageError("--data DIR is required");
  learner::EvalOptions options;
  options.data = vm["data"].as<std::string>();
  options.split = vm["split"].as<std::string>();
  if (vm.count("validation-sources")) {
    std::uint64_t n = 0;
    if (!parse_unsigned(vm["validation-sources"].as<std::string>(), n)) throw UsageError("--validation-sources must be a whole number");
    options.validation_sources = n;
  }
  if (vm.count("seed")) options.seed = parse_seed(vm["seed"].as<std::string>());
  if (vm.count("train-log") && !vm.count("plot")) throw UsageError("--train-log goes with --plot FILE.png");
  if (vm.count("plot")) require_writable_extension(vm["plot"].as<std::string>());
  const model::Model m = model::Model::load(positional[0]);
  const learner::EvalResult r = learner::evaluate(m, options);
  if (vm.count("plot")) {
    write_eval_plot(vm["plot"].as<std::string>(), vm.count("train-log") ? vm["train-log"].as<std::string>() : "", r);
  }
  if (vm.count("json")) {
    nlohmann::json j = scores_json(r.overall);
    j["split"] = options.split;
    j["skipped"] = r.skipped;
    j["y_channel"] = r.y_channel;
    j["shave"] = r.shave;
    j["bins"] = nlohmann::json::array();
    for (const auto& b : r.bins) {
      auto bin = scores_json(b.scores);
      bin["param"] = b.param;
      bin["lo"] = b.lo;
      bin["hi"] = b.hi;
      j["bins"].push_back(bin);
    }
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::printf("%s on %s (split %s%s): %zu pairs, %zu skipped\n", m.source().c_str(), options.data.string().c_str(),
              options.split.c_str(), r.y_channel ? ", luma, border shaved" : "", r.overall.pairs, r.skipped);
  std::printf("  %-24s %10s %8s %14s %10s\n", "", "PSNR dB", "SSIM", "identity dB", "id. SSIM");
  const auto line = [](const std::string& label, const learner::EvalScores& s) {
    std::printf("  %-24s %10.3f %8.4f %14.3f %10.4f   (%zu pairs)\n", label.c_str(), s.psnr_db, s.ssim, s.identity_psnr_db,
                s.identity_ssim, s.pairs);
  };
  line("all", r.overall);
  for (const auto& b : r.bins) {
    char label[64];
    std::snprintf(label, sizeof label, "%s %.4g..%.4g", b.param.c_str(), b.lo, b.hi);
    line(label, b.scores);
  }
  return 0;
}

}  // namespace opforge::cli
