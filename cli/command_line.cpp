#include "commands.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

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
