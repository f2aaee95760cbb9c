#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>

#include "commands.hpp"
#include "datagen_report.hpp"
#include "scheduler.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/preview.hpp"
#include "opforge/datagen/plan.hpp"
#include "opforge/datagen/recipe.hpp"

namespace opforge::cli {
namespace po = boost::program_options;
using namespace opforge::datagen;

namespace {

constexpr const char* kDatagenHelp =
    "\nRECIPE is a YAML recipe (see docs/datagen.md and manifests/). The dataset in DIR is byte-identical\n"
    "whatever --threads, --shard split (after merge) or resume point.\n"
    "\n"
    "  opforge datagen merge DIR                       finish a sharded dataset once every shard is done\n"
    "  opforge datagen preview RECIPE --out SHEET.png  contact sheet of the first pairs\n"
    "\n"
    "Exit status: 0 done; 2 bad recipe/usage, a write failure (disk full: rerun with --resume), every pair\n"
    "failed, or any failed pair with --strict; 1 internal error.\n";

int merge_command(const Args& args) {
  po::options_description opts("opforge datagen merge DIR");
  opts.add_options()("help,h", "this help");
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"DIR"}, vm);
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  const RunSummary summary = merge(positional[0]);
  std::cout << "merged " << positional[0] << ": " << summary.reused << " pairs, " << summary.failed << " failed\n";
  return 0;
}

int preview_command(const Args& args) {
  po::options_description opts("opforge datagen preview RECIPE --out SHEET.png [options]");
  PreviewOptions options;
  opts.add_options()("help,h", "this help")("out,o", po::value<std::string>(), "contact sheet to write (.png)")(
      "pairs", po::value(&options.pairs)->default_value(12), "pairs to show (1..200)")(
      "thumbnail", po::value(&options.thumbnail_height)->default_value(160), "thumbnail height in pixels")(
      "sources", po::value<std::string>(), "directory, glob or list file replacing the recipe's sources");
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"RECIPE"}, vm);
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  if (!vm.count("out")) throw UsageError("--out SHEET.png is required");
  const std::filesystem::path out = vm["out"].as<std::string>();
  require_writable_extension(out);
  if (vm.count("sources")) options.sources = source_spec_from_argument(vm["sources"].as<std::string>());
  const Recipe recipe = load_recipe(positional[0]);
  write_image(out, contact_sheet(recipe, options));
  std::cout << "wrote " << out.string() << "\n";
  return 0;
}

}  // namespace

int datagen_command(const Args& args) {
  if (!args.empty() && args[0] == "merge") return merge_command(Args(args.begin() + 1, args.end()));
  if (!args.empty() && args[0] == "preview") return preview_command(Args(args.begin() + 1, args.end()));

  po::options_description opts("opforge datagen RECIPE --out DIR [options]");
  RunOptions options;
  opts.add_options()("help,h", "this help")("out,o", po::value<std::string>(), "dataset directory")(
      "shard", po::value<std::string>(), "I/N: generate shard I (0-based) of N")(
      "shards", po::value<int>(), "N: the shard index comes from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX")(
      "resume", po::bool_switch(&options.resume), "keep complete pairs (hash-checked), redo the rest")(
      "sources", po::value<std::string>(), "directory, glob or list file replacing the recipe's sources")(
      "strict", po::bool_switch(), "exit with status 2 if any pair failed")(
      "quiet,q", po::bool_switch(), "no progress output");
  add_threads_option(opts);
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"RECIPE"}, vm);
  if (vm.count("help")) {
    std::cout << opts << kDatagenHelp;
    return 0;
  }
  if (!vm.count("out")) throw UsageError("--out DIR is required");
  if (vm.count("shard") && vm.count("shards")) throw UsageError("give --shard I/N or --shards N, not both");
  options.out_dir = vm["out"].as<std::string>();
  if (vm.count("shard")) options.shard = parse_shard(vm["shard"].as<std::string>());
  if (vm.count("shards")) options.shard = shard_from_environment(vm["shards"].as<int>(), [](const char* n) { return std::getenv(n); });
  if (vm.count("sources")) options.sources = source_spec_from_argument(vm["sources"].as<std::string>());
  if (!vm["quiet"].as<bool>()) options.progress = ProgressDisplay();

  const Recipe recipe = load_recipe(positional[0]);
  RunSummary summary;
  try {
    summary = generate(recipe, options);
  } catch (const WriteError& e) {
    throw Error(std::string(e.what()) + "; the pairs already written are kept: free space and rerun with --resume");
  }
  if (!summary.changed_sources.empty()) {
    std::string names;
    for (const auto& n : summary.changed_sources) names += (names.empty() ? "" : ", ") + n;
    std::cerr << "opforge datagen: " << summary.changed_sources.size()
              << " source(s) changed since their pairs were made; those pairs were redone: " << names << "\n";
  }
  std::cout << summary_line(recipe.name, summary, options.out_dir, options.shard) << "\n";
  if (summary.failed > 0) {
    const std::string where = (options.out_dir / (summary.finalized ? "failures.jsonl" : ".opforge")).string();
    if (summary.written + summary.reused == 0) {
      std::cerr << "opforge datagen: every pair failed (" << summary.failed << "); see " << where << "\n";
      return 2;
    }
    std::cerr << "opforge datagen: " << summary.failed << " pair(s) failed; see " << where << "\n";
    if (vm["strict"].as<bool>()) return 2;
  }
  return 0;
}

}  // namespace opforge::cli
