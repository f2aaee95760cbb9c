// opforge — ground-truth image operators, datasets, training and inference.
//
// Exit status: 0 success; 2 bad usage or bad input (one line on stderr naming
// the problem and the valid range); 1 internal failure.

#include <boost/program_options/errors.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace {

constexpr const char* kUsage =
    "usage: opforge <command> [options]\n"
    "\n"
    "commands:\n"
    "  list [--json]                              operators, parameters, ranges, defaults\n"
    "  apply OP IN OUT [--param NAME=VALUE]...    run one operator on one image\n"
    "        [--seed N] [--threads N] [--depth 8|16] [--max-pixels N]\n"
    "  metrics A B [--json] [--y-channel] [--shave N]   PSNR, SSIM, max_abs\n"
    "  datagen RECIPE --out DIR [--shard I/N | --shards N] [--resume] [--threads N] [--strict]\n"
    "                                             generate a dataset of (input, output) pairs\n"
    "  datagen merge DIR                          finish a sharded dataset\n"
    "  datagen preview RECIPE --out SHEET.png     contact sheet of a recipe's first pairs\n"
    "\n"
    "`opforge <command> --help` describes a command.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace opforge::cli;
  const std::map<std::string, int (*)(const Args&)> commands = {
      {"list", list_command}, {"apply", apply_command}, {"metrics", metrics_command}, {"datagen", datagen_command}};
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  opforge::reuse_large_allocations();
  // Past a file-size limit (ulimit -f) a write then fails with EFBIG, which
  // is reported like a full disk (one line, exit 2, no temporary left),
  // instead of SIGXFSZ killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  const std::string name = argv[1];
  const auto it = commands.find(name);
  if (it == commands.end()) {
    std::cerr << "opforge: unknown command '" << name << "'; valid: list, apply, metrics, datagen\n";
    return 2;
  }
  try {
    return it->second(Args(argv + 2, argv + argc));
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
  } catch (const std::exception& e) {
    std::cerr << "opforge " << name << ": internal error: " << e.what() << "\n";
    return 1;
  }
}
