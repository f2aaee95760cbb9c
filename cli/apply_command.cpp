#include <boost/program_options.hpp>
#include <iostream>
#include <map>
#include <optional>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/params.hpp"
#include "opforge/operators/registry.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

namespace {

std::map<std::string, std::string> parse_param_args(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError("--param '" + item + "' is not of the form NAME=VALUE");
    }
    const std::string name = item.substr(0, eq);
    if (!out.emplace(name, item.substr(eq + 1)).second) {
      throw UsageError("parameter '" + name + "' is given more than once");
    }
  }
  return out;
}

}  // namespace

int apply_command(const Args& args) {
  po::options_description opts("opforge apply OP IN OUT [options]");
  std::vector<std::string> params;
  opts.add_options()("help,h", "this help")(
      "param,p", po::value(&params)->composing(), "NAME=VALUE, repeatable (see `opforge list`)")(
      "seed", po::value<std::string>()->default_value("0"), "seed for operators that draw random numbers, 0..2^64-1")(
      "depth", po::value<int>()->default_value(8), "PNG output bits per channel: 8 or 16");
  add_threads_option(opts);
  add_max_pixels_option(opts);
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"OP", "IN", "OUT"}, vm);
  if (vm.count("help")) {
    std::cout << opts << "\nOutput format follows OUT's extension: .png (8-bit, or 16-bit with --depth 16), "
                         ".npy (float32, unclipped), .jpg.\n";
    return 0;
  }
  const int depth = vm["depth"].as<int>();
  if (depth != 8 && depth != 16) throw UsageError("--depth " + std::to_string(depth) + " is invalid; valid: 8 or 16");
  const std::uint64_t seed = parse_seed(vm["seed"].as<std::string>());
  const DecodeLimits limits = decode_limits_option(vm);

  // Validate everything cheap before reading or computing anything.
  const OperatorEntry& op = find_operator(positional[0]);
  const ParamValues values = op.resolve(parse_param_args(params));
  const std::filesystem::path in = positional[1], out = positional[2];
  require_writable_extension(out);

  const Image input = read_image(in, limits);
  const Image result = op.apply(input, values, {.seed = seed});
  write_image(out, result, {.png_depth = depth});
  return 0;
}

}  // namespace opforge::cli
