#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

int metrics_command(const Args& args) {
  po::options_description opts("opforge metrics A B [options]");
  opts.add_options()("help,h", "this help")("json", "print one JSON object")(
      "y-channel", "compare the luma of MATLAB's rgb2ycbcr only (super-resolution protocol)")(
      "shave", po::value<int>()->default_value(0), "pixels removed from every border before comparing");
  add_max_pixels_option(opts);
  po::variables_map vm;
  const auto positional = parse_command_line(args, opts, {"A", "B"}, vm);
  if (vm.count("help")) {
    std::cout << opts << "\nValues are on the [0,1] scale: PSNR with peak 1, SSIM as MATLAB's ssim.\n";
    return 0;
  }
  const DecodeLimits limits = decode_limits_option(vm);
  const Image a = read_image(positional[0], limits);
  const Image b = read_image(positional[1], limits);
  const MetricOptions options{.y_channel = vm.count("y-channel") != 0, .shave = vm["shave"].as<int>()};
  const Metrics m = compare_images(a, b, options);
  if (vm.count("json")) {
    nlohmann::json j = {{"psnr_db", std::isinf(m.psnr_db) ? nlohmann::json(nullptr) : nlohmann::json(m.psnr_db)},
                        {"identical", m.max_abs == 0},
                        {"ssim", m.ssim},
                        {"max_abs", m.max_abs}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("psnr_db %.6f\nssim %.8f\nmax_abs %.9g\n", m.psnr_db, m.ssim, m.max_abs);
  }
  return 0;
}

}  // namespace opforge::cli
