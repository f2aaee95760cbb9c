#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/model/model.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

namespace {

nlohmann::json model_json(const model::Model& m) {
  const auto& s = m.spec();
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : s.layers) {
    layers.push_back({{"name", l.name},
                      {"kernel", {l.kernel_h, l.kernel_w}},
                      {"cin", l.cin},
                      {"cout", l.cout},
                      {"dilation", l.dilation},
                      {"stride", l.stride},
                      {"bias", l.bias},
                      {"normalizer", model::to_string(l.normalizer)},
                      {"activation", model::to_string(l.activation)},
                      {"negative_slope", l.activation == model::Activation::leaky_relu ? nlohmann::json(l.negative_slope) : nlohmann::json()},
                      {"macs_per_pixel", double(l.kernel_h) * l.kernel_w * l.cin * l.cout}});
    if (l.transposed) layers.back()["transposed"] = true;
    if (!l.residual_from.empty()) layers.back()["residual_from"] = l.residual_from;
    if (l.generated != model::Generated::none) layers.back()["generated"] = model::to_string(l.generated);
  }
  nlohmann::json planes = nlohmann::json::array();
  for (const auto& p : s.planes) {
    nlohmann::json plane = {{"name", p.name}, {"meaning", p.meaning}, {"min", p.min}, {"max", p.max},
                            {"feeds", p.feeds_weights ? "weights" : "input"}};
    if (!p.param.empty()) {
      plane["param"] = p.param;
      plane["scale"] = p.log_scale ? "log" : "linear";
      plane["param_range"] = {p.param_lo, p.param_hi};
    }
    planes.push_back(std::move(plane));
  }
  return {{"file", m.source()},
          {"architecture", s.architecture},
          {"spec_version", s.version},
          {"image_channels", s.image_channels},
          {"input_channels", s.input_channels()},
          {"channel_order", s.channel_order == model::ChannelOrder::bgr ? "BGR" : "RGB"},
          {"quantisation", s.quantisation == model::Quantisation::truncate ? "truncate" : "round"},
          {"planes", planes},
          {"one_hot_operators", s.one_hot_operators},
          {"bn_epsilon", s.bn_epsilon},
          {"input_transform", s.input_transform == model::InputTransform::fan_edges ? "fan_edges" : "none"},
          {"weight_inputs", s.weight_inputs()},
          {"layers", layers},
          {"parameters", s.parameter_count()},
          {"receptive_field", s.receptive_field()},
          {"macs_per_pixel", s.macs_per_pixel()},
          {"flops_per_pixel", 2 * s.macs_per_pixel()},
          {"provenance", m.provenance()}};
}

void print_model(const model::Model& m) {
  const auto& s = m.spec();
  std::printf("%s\n", m.source().c_str());
  std::printf("  architecture     %s (spec version %d)\n", s.architecture.c_str(), s.version);
  const bool fan = s.input_transform == model::InputTransform::fan_edges;
  std::printf("  input            %d channels: %d image (%s, %s)%s", s.input_channels(), s.image_channels,
              s.channel_order == model::ChannelOrder::bgr ? "BGR" : "RGB", fan ? "x255 - 128" : "[0,1]",
              fan ? " + Fan et al.'s edge plane" : "");
  std::printf(s.input_planes() == 0 ? "\n" : " + %d constant plane(s)\n", s.input_planes());
  if (s.weight_inputs() > 0) std::printf("  weight inputs    %d (the generated layers' p)\n", s.weight_inputs());
  for (std::size_t i = 0; i < s.planes.size(); ++i) {
    const auto& p = s.planes[i];
    std::printf("    %s %-2zu %-28s %g..%g  %s\n", p.feeds_weights ? "p    " : "plane", i + 1, p.name.c_str(), p.min, p.max,
                p.meaning.c_str());
  }
  if (s.one_hot_operators) std::printf("    (--operator NAME sets one plane to 1; --planes gives a blend)\n");
  for (const auto& p : s.planes) {
    if (!p.param.empty()) {
      std::printf("    (--param %s=V, V in %g..%g, sets plane '%s')\n", p.param.c_str(), p.param_lo, p.param_hi, p.name.c_str());
    }
  }
  std::printf("  output           %d channels%s, %s on 8/16-bit output\n", s.output_channels(), fan ? " in [0,255]" : "",
              s.quantisation == model::Quantisation::truncate ? "truncated" : "rounded");
  std::printf("  layers           %zu\n", s.layers.size());
  for (const auto& l : s.layers) {
    std::string extra = l.bias ? " bias" : "";
    if (l.transposed) extra += " transposed (x2)";
    if (l.stride == 2 && !l.transposed) extra += " stride 2";
    if (!l.residual_from.empty()) extra += " + input of " + l.residual_from;
    if (l.generated == model::Generated::weights) extra += " weights from p";
    if (l.generated == model::Generated::norm) extra += " norm from p";
    std::printf("    %-12s %dx%d %4d -> %-4d dilation %-4d %-11s %-10s%s\n", l.name.c_str(), l.kernel_h, l.kernel_w,
                l.cin, l.cout, l.dilation, model::to_string(l.normalizer), model::to_string(l.activation), extra.c_str());
  }
  std::printf("  parameters       %zu\n", s.parameter_count());
  std::printf("  receptive field  %d x %d pixels\n", s.receptive_field(), s.receptive_field());
  std::printf("  cost             %.0f MAC/pixel = %.0f FLOP/pixel (%.1f GFLOP at 1920x1080)\n", s.macs_per_pixel(),
              2 * s.macs_per_pixel(), 2 * s.macs_per_pixel() * 1920 * 1080 / 1e9);
  for (const char* key : {"source", "source_license", "source_authors"}) {
    const auto it = m.provenance().find(key);
    if (it != m.provenance().end()) std::printf("  %-16s %s\n", key, it->second.c_str());
  }
}

}  // namespace

int model_command(const Args& args) {
  if (args.empty() || (args[0] != "info" && args[0] != "--help" && args[0] != "-h")) {
    throw UsageError(args.empty() ? "expected a subcommand; valid: info"
                                  : "unknown subcommand '" + args[0] + "'; valid: info");
  }
  po::options_description opts("opforge model info MODEL [--json]");
  opts.add_options()("help,h", "this help")("json", "print one JSON object");
  po::variables_map vm;
  const Args rest = args[0] == "info" ? Args(args.begin() + 1, args.end()) : args;
  const auto positional = parse_command_line(rest, opts, {"MODEL"}, vm);
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  const model::Model m = model::Model::load(positional[0]);
  if (vm.count("json")) {
    std::cout << model_json(m).dump(2) << "\n";
  } else {
    print_model(m);
  }
  return 0;
}

}  // namespace opforge::cli
