// opforge — ground-truth image operators, datasets, training and inference.
//
// Exit status: 0 success; 2 bad usage or bad input (one line on stderr naming
// the problem and the valid range); 1 internal failure.

#include <boost/program_options/errors.hpp>
#include <opencv2/core.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"
#include "opforge/core/params.hpp"
#include "opforge/core/threads.hpp"

namespace {

using namespace opforge::cli;

// The one list of commands: dispatch, usage and the "valid commands"
// message all come from it.
struct Command {
  std::string_view name;
  std::string_view synopsis;  ///< lines after the name in the usage text
  int (*run)(const Args&);
  bool takes_threads;         ///< main parses --threads for it
};

constexpr Command kCommands[] = {
    {"list", " [--json]                              operators, parameters, ranges, defaults\n", list_command, false},
    {"apply",
     " OP IN OUT [--param NAME=VALUE]...    run one operator on one image\n"
     "        [--seed N] [--threads N] [--depth 8|16] [--max-pixels N]\n",
     apply_command, true},
    {"metrics", " A B [--json] [--y-channel] [--shave N]   PSNR, SSIM, max_abs\n", metrics_command, false},
    {"datagen",
     " RECIPE --out DIR [--shard I/N | --shards N] [--resume] [--threads N] [--strict]\n"
     "                                             generate a dataset of (input, output) pairs\n"
     "  datagen merge DIR                          finish a sharded dataset\n"
     "  datagen preview RECIPE --out SHEET.png     contact sheet of a recipe's first pairs\n",
     datagen_command, true},
    {"train",
     " CONFIG --data DIR --out MODEL [--resume] [--steps N] [--threads N]\n"
     "                                             train a network on a dataset\n",
     train_command, true},
    {"eval",
     " MODEL --data DIR [--split val|train|all] [--json]\n"
     "                                             PSNR/SSIM against the targets and the identity baseline\n",
     eval_command, true},
    {"infer",
     " MODEL IN OUT [--planes V,V,...] [--operator NAME] [--device cpu] [--threads N]\n"
     "                                             run a learned model on an image or a directory\n",
     infer_command, true},
    {"model", " info MODEL [--json]                  architecture, layers, receptive field, FLOPs\n", model_command,
     false},
};

std::string usage() {
  std::string text = "usage: opforge <command> [options]\n\ncommands:\n";
  for (const auto& c : kCommands) text.append("  ").append(c.name).append(c.synopsis);
  text += "\n`opforge <command> --help` describes a command.\n";
  return text;
}

std::string valid_commands() {
  std::string names;
  for (const auto& c : kCommands) names.append(names.empty() ? "" : ", ").append(c.name);
  return names;
}

// Takes `--threads N` / `--threads=N` out of `args`: the one place it is
// parsed, for every command that computes.
std::optional<int> take_threads(Args& args) {
  std::optional<int> threads;
  for (std::size_t i = 0; i < args.size();) {
    std::string value;
    if (args[i] == "--threads") {
      if (i + 1 == args.size()) throw UsageError("--threads needs a value; valid: 1..1024 (default: all cores)");
      value = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i + 2));
    } else if (args[i].rfind("--threads=", 0) == 0) {
      value = args[i].substr(10);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
      continue;
    }
    double n = 0;
    if (!opforge::parse_number(value, n) || n != std::floor(n)) {
      throw UsageError("--threads '" + value + "' is not a whole number; valid: 1.." +
                       std::to_string(opforge::kMaxThreads) + " (default: all cores)");
    }
    if (n < 1 || n > opforge::kMaxThreads) {
      throw UsageError("--threads " + value + " is out of range; valid: 1.." + std::to_string(opforge::kMaxThreads) +
                       " (default: all cores)");
    }
    threads = static_cast<int>(n);
  }
  return threads;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << usage();
    return argc < 2 ? 2 : 0;
  }
  opforge::reuse_large_allocations();
  // Past a file-size limit (ulimit -f) a write then fails with EFBIG, which
  // is reported like a full disk (one line, exit 2, no temporary left),
  // instead of SIGXFSZ killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  const std::string name = argv[1];
  const Command* command = nullptr;
  for (const auto& c : kCommands) {
    if (c.name == name) command = &c;
  }
  if (command == nullptr) {
    std::cerr << "opforge: unknown command '" << name << "'; valid: " << valid_commands() << "\n";
    return 2;
  }
  try {
    Args args(argv + 2, argv + argc);
    const opforge::ThreadLimit thread_limit(command->takes_threads ? take_threads(args) : std::nullopt);
    return command->run(args);
  } catch (const opforge::Error& e) {
    std::cerr << "opforge " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "opforge " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const boost::program_options::error& e) {
    std::cerr << "opforge " << name << ": " << e.what() << " (see opforge " << name << " --help)\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "opforge " << name << ": out of memory\n";
    return 1;
  } catch (const cv::Exception& e) {
    // OpenCV reports a failed allocation as its own exception.
    if (e.code == cv::Error::StsNoMem) {
      std::cerr << "opforge " << name << ": out of memory\n";
    } else {
      std::cerr << "opforge " << name << ": internal error: " << e.what() << "\n";
    }
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "opforge " << name << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
