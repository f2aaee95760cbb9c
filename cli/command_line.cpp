#include "commands.hpp"

#include <cstdio>

#include "opforge/core/params.hpp"
#include "opforge/core/threads.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

void add_threads_option(po::options_description& options) {
  options.add_options()("threads", po::value<int>(), "worker threads, 1..1024 (default: all cores); results do not depend on it");
  // Only for --help: main() has taken the option out of the arguments.
}

void add_max_pixels_option(po::options_description& options) {
  options.add_options()("max-pixels", po::value<std::string>(),
                        ("largest image read, in pixels (default " + std::to_string(kDefaultMaxPixels) +
                         ", PIL's): refuses decompression bombs before decoding")
                            .c_str());
}

DecodeLimits decode_limits_option(const po::variables_map& vm) {
  DecodeLimits limits;
  if (!vm.count("max-pixels")) return limits;
  const std::string text = vm["max-pixels"].as<std::string>();
  std::uint64_t value = 0;
  const std::uint64_t most = kMaxImageSide * kMaxImageSide;
  if (!parse_unsigned(text, value) || value < 1 || value > most) {
    throw UsageError("--max-pixels '" + text + "' is invalid; valid: 1.." + std::to_string(most));
  }
  limits.max_pixels = value;
  return limits;
}

std::string progress_bar(double done, double total) {
  constexpr int kWidth = 30;
  std::string bar(total > 0 ? static_cast<std::size_t>(kWidth * done / total) : 0, '#');
  bar.resize(kWidth, '.');
  return "[" + bar + "]";
}

std::string time_left(double done, double total, double rate) {
  const int seconds = rate > 0 ? static_cast<int>((total - done) / rate) : 0;
  char text[32];
  std::snprintf(text, sizeof text, "%d:%02d", seconds / 60, seconds % 60);
  return text;
}

std::vector<std::string> parse_command_line(const Args& args, const po::options_description& options,
                                            const std::vector<std::string>& positional_names, po::variables_map& vm) {
  po::options_description hidden;
  hidden.add_options()("positional", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description pos;
  pos.add("positional", -1);
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (vm.count("help")) return {};
  auto positional = vm.count("positional") ? vm["positional"].as<std::vector<std::string>>() : Args{};
  if (positional.size() != positional_names.size()) {
    std::string expected;
    for (const auto& n : positional_names) expected += (expected.empty() ? "" : " ") + n;
    throw UsageError("expected " + expected + ", got " + std::to_string(positional.size()) + " argument(s)");
  }
  return positional;
}

}  // namespace opforge::cli
