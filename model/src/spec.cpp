#include "opforge/model/spec.hpp"

#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "opforge/core/error.hpp"
#include "opforge/core/params.hpp"

namespace opforge::model {
namespace {

using nlohmann::json;

constexpr int kMaxKernel = 15;
constexpr int kMaxDilation = 4096;
constexpr int kMaxChannels = 4096;
constexpr std::size_t kMaxLayers = 1000;

// The three architectures published with the CAN paper, read without an
// opforge_spec_version: their conventions live in the authors' scripts, not
// in the files (models/README.md).
bool is_published_can(const std::string& architecture) {
  return architecture == "can24_an" || architecture == "can32_an_parameterized" ||
         architecture == "can32_an_combined";
}

json parse_json_value(const std::map<std::string, std::string>& metadata, const std::string& key,
                      const std::string& bad) {
  const auto it = metadata.find(key);
  if (it == metadata.end()) throw Error(bad + "metadata has no '" + key + "'");
  json value = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) throw Error(bad + "metadata '" + key + "' is not valid JSON");
  return value;
}

int int_field(const json& entry, const char* key, int fallback, const std::string& where) {
  const auto it = entry.find(key);
  if (it == entry.end() || it->is_null()) {
    if (fallback == INT_MIN) throw Error(where + "has no '" + key + "'");
    return fallback;
  }
  if (!it->is_number_integer()) throw Error(where + "'" + key + "' is not an integer");
  const auto v = it->get<std::int64_t>();
  if (v < -1000000 || v > 1000000) throw Error(where + "'" + key + "' " + std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

Normalizer parse_normalizer(const json& value, const std::string& where) {
  if (value.is_null()) return Normalizer::none;
  if (value.is_string()) {
    const auto s = value.get<std::string>();
    if (s == "none") return Normalizer::none;
    if (s == "adaptive_bn") return Normalizer::adaptive_bn;
    if (s == "instance") return Normalizer::instance;
  }
  throw Error(where + "normalizer " + value.dump() + " is not supported; valid: adaptive_bn, instance, none");
}

void parse_activation(const json& value, LayerSpec& layer, const std::string& where) {
  if (value.is_null()) {
    layer.activation = Activation::none;
    return;
  }
  if (value.is_string()) {
    const auto s = value.get<std::string>();
    if (s == "none") {
      layer.activation = Activation::none;
      return;
    }
    if (s == "relu") {
      layer.activation = Activation::relu;
      return;
    }
    // "lrelu_0.2": leaky ReLU with its negative slope in the name, as the
    // published files spell it.
    if (s.rfind("lrelu_", 0) == 0) {
      double slope = 0;
      if (parse_number(s.substr(6), slope) && slope >= 0 && slope <= 1) {
        layer.activation = Activation::leaky_relu;
        layer.negative_slope = static_cast<float>(slope);
        return;
      }
    }
  }
  throw Error(where + "activation " + value.dump() + " is not supported; valid: lrelu_S (0 <= S <= 1), relu, none");
}

LayerSpec parse_layer(const json& entry, std::size_t index, const std::string& bad) {
  std::string where = bad + "layer " + std::to_string(index) + ": ";
  if (!entry.is_object()) throw Error(where + "is not a JSON object");
  LayerSpec layer;
  const auto name = entry.find("name");
  if (name == entry.end() || !name->is_string() || name->get<std::string>().empty()) {
    throw Error(where + "has no name");
  }
  layer.name = name->get<std::string>();
  where = bad + "layer '" + layer.name + "': ";
  const auto kernel = entry.find("kernel");
  if (kernel == entry.end() || !kernel->is_array() || kernel->size() != 2 || !(*kernel)[0].is_number_integer() ||
      !(*kernel)[1].is_number_integer()) {
    throw Error(where + "kernel must be [height, width]");
  }
  const auto kh = (*kernel)[0].get<std::int64_t>(), kw = (*kernel)[1].get<std::int64_t>();
  if (kh < 1 || kw < 1 || kh > kMaxKernel || kw > kMaxKernel) {
    throw Error(where + "kernel " + kernel->dump() + " is invalid; valid: odd sizes 1.." + std::to_string(kMaxKernel));
  }
  layer.kernel_h = static_cast<int>(kh);
  layer.kernel_w = static_cast<int>(kw);
  layer.cin = int_field(entry, "cin", INT_MIN, where);
  layer.cout = int_field(entry, "cout", INT_MIN, where);
  layer.dilation = int_field(entry, "dilation", 1, where);
  layer.stride = int_field(entry, "stride", 1, where);
  if (const auto padding = entry.find("padding"); padding != entry.end() && *padding != "SAME") {
    throw Error(where + "padding " + padding->dump() + " is not supported; valid: \"SAME\"");
  }
  if (const auto transposed = entry.find("transposed"); transposed != entry.end()) {
    if (!transposed->is_boolean()) throw Error(where + "transposed must be true or false");
    layer.transposed = transposed->get<bool>();
  }
  if (const auto residual = entry.find("residual_from"); residual != entry.end() && !residual->is_null()) {
    if (!residual->is_string()) throw Error(where + "residual_from must be a layer name");
    layer.residual_from = residual->get<std::string>();
  }
  if (const auto generated = entry.find("generated"); generated != entry.end() && !generated->is_null()) {
    const std::string g = generated->is_string() ? generated->get<std::string>() : "";
    if (g == "weights") {
      layer.generated = Generated::weights;
    } else if (g == "norm") {
      layer.generated = Generated::norm;
    } else if (g != "none") {
      throw Error(where + "generated " + generated->dump() + " is invalid; valid: weights, norm, none");
    }
  }
  const auto bias = entry.find("bias");
  if (bias != entry.end() && !bias->is_boolean()) throw Error(where + "bias must be true or false");
  layer.bias = bias != entry.end() && bias->get<bool>();
  layer.normalizer = parse_normalizer(entry.value("normalizer", json()), where);
  parse_activation(entry.value("activation", json()), layer, where);
  return layer;
}

// The planes and conventions of the published CAN files.
void apply_published_conventions(NetworkSpec& spec, const std::map<std::string, std::string>& metadata,
                                 const std::string& bad) {
  spec.channel_order = ChannelOrder::bgr;
  spec.quantisation = Quantisation::truncate;
  if (spec.architecture == "can32_an_parameterized") {
    spec.planes.push_back(InputPlane::unmapped("parameter", "L0 smoothing strength; trained on k/200 for k = 2..200 (0.01..1.0)"));
  } else if (spec.architecture == "can32_an_combined") {
    const json order = parse_json_value(metadata, "operator_order", bad);
    if (!order.is_array() || order.empty()) throw Error(bad + "operator_order is not a list of names");
    for (const auto& name : order) {
      if (!name.is_string()) throw Error(bad + "operator_order is not a list of names");
      spec.planes.push_back(InputPlane::unmapped(name.get<std::string>(), "one-hot operator code (blends sum to 1)"));
    }
    spec.one_hot_operators = true;
  }
}

void parse_planes(NetworkSpec& spec, const json& planes, const std::string& bad) {
  if (!planes.is_array()) throw Error(bad + "input_planes is not a list");
  for (const auto& p : planes) {
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) {
      throw Error(bad + "every input plane needs a name");
    }
    InputPlane plane;
    plane.name = p["name"].get<std::string>();
    const std::string where = bad + "input plane '" + plane.name + "': ";
    try {
      plane.meaning = p.value("meaning", std::string());
      plane.min = p.value("min", 0.0);
      plane.max = p.value("max", 1.0);
      const std::string feeds = p.value("feeds", std::string("input"));
      if (feeds != "input" && feeds != "weights") throw Error(where + "feeds '" + feeds + "' is invalid; valid: input, weights");
      plane.feeds_weights = feeds == "weights";
      if (p.contains("param")) {
        plane.param = p["param"].get<std::string>();
        const std::string scale = p.value("scale", std::string("linear"));
        if (scale != "linear" && scale != "log") throw Error(where + "scale '" + scale + "' is invalid; valid: linear, log");
        plane.log_scale = scale == "log";
        const json range = p.value("param_range", json());
        if (!range.is_array() || range.size() != 2 || !range[0].is_number() || !range[1].is_number()) {
          throw Error(where + "param_range must be [lo, hi]");
        }
        plane.param_lo = range[0].get<double>();
        plane.param_hi = range[1].get<double>();
      }
    } catch (const json::exception&) {
      throw Error(where + "a field has the wrong type");
    }
    validate_plane(plane, where);
    spec.planes.push_back(std::move(plane));
  }
}

}  // namespace

void validate_plane(const InputPlane& plane, const std::string& where) {
  if (!std::isfinite(plane.min) || !std::isfinite(plane.max) || !(plane.min <= plane.max)) {
    throw Error(where + "min and max must be finite with min <= max");
  }
  if (plane.param.empty()) return;
  if (!std::isfinite(plane.param_lo) || !std::isfinite(plane.param_hi) || !(plane.param_lo < plane.param_hi)) {
    throw Error(where + "param_range must be finite with lo < hi");
  }
  if (plane.log_scale && !(plane.param_lo > 0)) throw Error(where + "a log-scale param_range must be positive");
}

float InputPlane::value_for(double v) const {
  if (!std::isfinite(v) || v < param_lo || v > param_hi) {
    std::ostringstream msg;
    msg << "plane '" << name << "': " << param << " = " << v << " is outside the range the network was trained on; valid: "
        << param_lo << ".." << param_hi;
    throw Error(msg.str());
  }
  const double t = log_scale ? (std::log(v) - std::log(param_lo)) / (std::log(param_hi) - std::log(param_lo))
                             : (v - param_lo) / (param_hi - param_lo);
  return static_cast<float>(min + t * (max - min));
}

int NetworkSpec::input_planes() const {
  int n = 0;
  for (const auto& p : planes) n += p.feeds_weights ? 0 : 1;
  return n;
}

int NetworkSpec::receptive_field() const {
  // In input pixels: a layer after k stride-2 layers (not yet undone) reaches 2^k times as far.
  int field = 1, scale = 1;
  for (const auto& l : layers) {
    if (l.transposed) {
      scale = std::max(1, scale / 2);
      field += 2 * scale;  // a 4-tap kernel at the finer scale
      continue;
    }
    field += 2 * std::max(l.reach_y(), l.reach_x()) * scale;
    scale *= l.stride;
  }
  return field;
}

double NetworkSpec::macs_per_pixel() const {
  double macs = 0, pixels = 1;  // the layer's output pixels per input pixel
  for (const auto& l : layers) {
    if (l.transposed) {
      macs += pixels * l.kernel_h * l.kernel_w * l.cin * l.cout;  // every input pixel touches 16 outputs
      pixels *= 4;
      continue;
    }
    pixels /= double(l.stride) * l.stride;
    macs += pixels * l.kernel_h * l.kernel_w * l.cin * l.cout;
  }
  return macs;
}

std::size_t NetworkSpec::parameter_count() const {
  const std::size_t p = static_cast<std::size_t>(weight_inputs());
  std::size_t n = 0;
  for (const auto& l : layers) {
    const std::size_t kernel = static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout;
    n += kernel * (l.generated == Generated::weights ? 1 + p : 1);
    if (l.bias) n += l.cout;
    if (l.normalizer == Normalizer::adaptive_bn) n += 2 + l.cout;  // w0, w1, beta
    if (l.normalizer == Normalizer::instance) n += 2 * l.cout * (l.generated == Generated::norm ? 1 + p : 1);
  }
  return n;
}

const char* to_string(Normalizer n) {
  return n == Normalizer::adaptive_bn ? "adaptive_bn" : n == Normalizer::instance ? "instance" : "none";
}
const char* to_string(Generated g) {
  return g == Generated::weights ? "weights" : g == Generated::norm ? "norm" : "none";
}
const char* to_string(Activation a) {
  return a == Activation::leaky_relu ? "leaky_relu" : a == Activation::relu ? "relu" : "none";
}

void validate_spec(const NetworkSpec& spec, const std::string& source) {
  const std::string bad = "model '" + source + "': ";
  if (spec.layers.empty()) throw Error(bad + "the network has no layers");
  if (spec.layers.size() > kMaxLayers) throw Error(bad + "more than " + std::to_string(kMaxLayers) + " layers");
  if (spec.image_channels != 1 && spec.image_channels != 3) {
    throw Error(bad + "image_channels " + std::to_string(spec.image_channels) + " is invalid; valid: 1 or 3");
  }
  if (!(spec.bn_epsilon > 0 && spec.bn_epsilon < 1)) throw Error(bad + "bn_epsilon must lie in (0, 1)");
  for (const auto& plane : spec.planes) validate_plane(plane, bad + "input plane '" + plane.name + "': ");
  if (!(spec.in_epsilon > 0 && spec.in_epsilon < 1)) throw Error(bad + "in_epsilon must lie in (0, 1)");
  if (spec.input_transform == InputTransform::fan_edges && spec.image_channels != 3) {
    throw Error(bad + "the fan_edges input needs 3-channel images");
  }
  if (spec.one_hot_operators && spec.weight_inputs() > 0) {
    throw Error(bad + "one-hot operator planes cannot feed generated weights");
  }
  int channels = spec.input_channels();
  int open_strides = 0;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const std::string where = bad + "layer '" + l.name + "': ";
    if (l.cin < 1 || l.cout < 1 || l.cin > kMaxChannels || l.cout > kMaxChannels) {
      throw Error(where + "channels " + std::to_string(l.cin) + "->" + std::to_string(l.cout) +
                  " are invalid; valid: 1.." + std::to_string(kMaxChannels));
    }
    if (l.cin != channels) {
      throw Error(where + "takes " + std::to_string(l.cin) + " channels but receives " + std::to_string(channels) +
                  " (the layers do not chain)");
    }
    if (l.dilation < 1 || l.dilation > kMaxDilation) {
      throw Error(where + "dilation " + std::to_string(l.dilation) + " is invalid; valid: 1.." +
                  std::to_string(kMaxDilation));
    }
    if (l.transposed) {
      if (l.kernel_h != 4 || l.kernel_w != 4 || l.stride != 2 || l.dilation != 1) {
        throw Error(where + "a transposed layer must be 4x4, stride 2, dilation 1 (PyTorch's padding 1)");
      }
      if (open_strides == 0) throw Error(where + "a transposed layer needs an earlier stride-2 layer to undo");
      --open_strides;
    } else {
      if (l.stride != 1 && l.stride != 2) {
        throw Error(where + "stride " + std::to_string(l.stride) + " is not supported; valid: 1, 2");
      }
      if (l.kernel_h < 1 || l.kernel_w < 1 || l.kernel_h > kMaxKernel || l.kernel_w > kMaxKernel ||
          l.kernel_h % 2 == 0 || l.kernel_w % 2 == 0) {
        throw Error(where + "kernel sizes must be odd, 1.." + std::to_string(kMaxKernel));
      }
      if (l.stride == 2) ++open_strides;
    }
    if (!l.residual_from.empty()) {
      std::size_t from = i + 1;
      for (std::size_t j = 0; j <= i; ++j) {
        if (spec.layers[j].name == l.residual_from) from = j;
      }
      if (from > i) throw Error(where + "residual_from '" + l.residual_from + "' names no earlier layer");
      if (spec.layers[from].cin != l.cout) {
        throw Error(where + "adds the input of '" + l.residual_from + "' (" + std::to_string(spec.layers[from].cin) +
                    " channels) to its " + std::to_string(l.cout));
      }
      for (std::size_t j = from; j <= i; ++j) {
        if (spec.layers[j].stride != 1) {
          throw Error(where + "a residual connection cannot span a change of resolution ('" + spec.layers[j].name + "')");
        }
      }
    }
    if (l.generated != Generated::none && spec.weight_inputs() == 0) {
      throw Error(where + "has generated values but the network has no weight inputs (planes with feeds: weights)");
    }
    if (l.generated == Generated::weights && l.bias) {
      throw Error(where + "generated weights with a bias are not supported (Fan et al.'s layers have none)");
    }
    if (l.generated == Generated::norm && l.normalizer != Normalizer::instance) {
      throw Error(where + "generated: norm needs instance normalisation");
    }
    if (l.normalizer == Normalizer::instance && l.bias) {
      throw Error(where + "a bias before instance normalisation has no effect; give bias: false");
    }
    channels = l.cout;
  }
  if (open_strides != 0) throw Error(bad + "every stride-2 layer needs a transposed layer to undo it");
  if (channels != spec.image_channels) {
    throw Error(bad + "the last layer gives " + std::to_string(channels) + " channels but the image has " +
                std::to_string(spec.image_channels));
  }
}

NetworkSpec parse_spec(const std::map<std::string, std::string>& metadata, const std::string& source) {
  const std::string bad = "model '" + source + "': ";
  NetworkSpec spec;
  const auto arch = metadata.find("architecture");
  spec.architecture = arch == metadata.end() ? "" : arch->second;
  const auto version = metadata.find("opforge_spec_version");
  if (version == metadata.end()) {
    if (!is_published_can(spec.architecture)) {
      throw Error(bad + "not an opforge model: no opforge_spec_version, and architecture '" + spec.architecture +
                  "' is not one of the published CAN files (can24_an, can32_an_parameterized, can32_an_combined)");
    }
    if (const auto layout = metadata.find("layout"); layout != metadata.end() && layout->second != "HWIO") {
      throw Error(bad + "layout '" + layout->second + "' is not supported; valid: HWIO");
    }
    apply_published_conventions(spec, metadata, bad);
  } else {
    std::uint64_t v = 0;
    if (!parse_unsigned(version->second, v) || v < 1) {
      throw Error(bad + "opforge_spec_version '" + version->second + "' is not a positive integer");
    }
    if (v > static_cast<std::uint64_t>(kSpecVersion)) {
      throw Error(bad + "spec version " + version->second + " is newer than this opforge reads (" +
                  std::to_string(kSpecVersion) + "); upgrade opforge");
    }
    spec.version = static_cast<int>(v);
    const auto get = [&](const char* key) -> std::string {
      const auto it = metadata.find(key);
      if (it == metadata.end()) throw Error(bad + "metadata has no '" + key + "'");
      return it->second;
    };
    const std::string order = get("channel_order");
    if (order != "RGB" && order != "BGR") throw Error(bad + "channel_order '" + order + "' is invalid; valid: RGB, BGR");
    spec.channel_order = order == "BGR" ? ChannelOrder::bgr : ChannelOrder::rgb;
    const std::string quant = get("quantisation");
    if (quant != "round" && quant != "truncate") {
      throw Error(bad + "quantisation '" + quant + "' is invalid; valid: round, truncate");
    }
    spec.quantisation = quant == "truncate" ? Quantisation::truncate : Quantisation::round;
    std::uint64_t image_channels = 0;
    if (!parse_unsigned(get("image_channels"), image_channels) || image_channels > 4) {
      throw Error(bad + "image_channels '" + get("image_channels") + "' is invalid; valid: 1 or 3");
    }
    spec.image_channels = static_cast<int>(image_channels);
    parse_planes(spec, parse_json_value(metadata, "input_planes", bad), bad);
    spec.one_hot_operators = metadata.count("one_hot_operators") && metadata.at("one_hot_operators") == "true";
  }
  if (const auto eps = metadata.find("bn_epsilon"); eps != metadata.end()) {
    if (!parse_number(eps->second, spec.bn_epsilon)) throw Error(bad + "bn_epsilon '" + eps->second + "' is not a number");
  }
  if (const auto eps = metadata.find("in_epsilon"); eps != metadata.end()) {
    if (!parse_number(eps->second, spec.in_epsilon)) throw Error(bad + "in_epsilon '" + eps->second + "' is not a number");
  }
  if (const auto transform = metadata.find("input_transform"); transform != metadata.end()) {
    if (transform->second == "fan_edges") {
      spec.input_transform = InputTransform::fan_edges;
    } else if (transform->second != "none") {
      throw Error(bad + "input_transform '" + transform->second + "' is not supported; valid: none, fan_edges");
    }
  }
  const json layers = parse_json_value(metadata, "layers", bad);
  if (!layers.is_array()) throw Error(bad + "metadata 'layers' is not a list");
  if (layers.size() > kMaxLayers) throw Error(bad + "more than " + std::to_string(kMaxLayers) + " layers");
  for (std::size_t i = 0; i < layers.size(); ++i) spec.layers.push_back(parse_layer(layers[i], i, bad));
  if (const auto declared = metadata.find("input_channels"); declared != metadata.end()) {
    if (declared->second != std::to_string(spec.input_channels())) {
      throw Error(bad + "input_channels " + declared->second + " disagrees with " +
                  std::to_string(spec.input_channels()) + " image channels and planes");
    }
  }
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (spec.layers[i].name == spec.layers[j].name) throw Error(bad + "two layers are named '" + spec.layers[i].name + "'");
    }
  }
  validate_spec(spec, source);
  return spec;
}

std::map<std::string, std::string> spec_metadata(const NetworkSpec& spec) {
  json layers = json::array();
  for (const auto& l : spec.layers) {
    json entry = {{"name", l.name},         {"kernel", {l.kernel_h, l.kernel_w}},
                  {"cin", l.cin},           {"cout", l.cout},
                  {"dilation", l.dilation}, {"stride", l.stride},
                  {"padding", "SAME"},      {"bias", l.bias},
                  {"normalizer", l.normalizer == Normalizer::none ? json() : json(to_string(l.normalizer))}};
    // Fields beyond the published files' only where they are set, so a
    // CAN's layers read as the published ones do.
    if (l.transposed) entry["transposed"] = true;
    if (!l.residual_from.empty()) entry["residual_from"] = l.residual_from;
    if (l.generated != Generated::none) entry["generated"] = to_string(l.generated);
    if (l.activation == Activation::leaky_relu) {
      std::ostringstream slope;
      slope << l.negative_slope;
      entry["activation"] = "lrelu_" + slope.str();
    } else {
      entry["activation"] = l.activation == Activation::relu ? json("relu") : json();
    }
    layers.push_back(std::move(entry));
  }
  json planes = json::array();
  for (const auto& p : spec.planes) {
    json plane = {{"name", p.name}, {"meaning", p.meaning}, {"min", p.min}, {"max", p.max}};
    if (p.feeds_weights) plane["feeds"] = "weights";
    if (!p.param.empty()) {
      plane["param"] = p.param;
      plane["scale"] = p.log_scale ? "log" : "linear";
      plane["param_range"] = {p.param_lo, p.param_hi};
    }
    planes.push_back(std::move(plane));
  }
  std::ostringstream eps;
  eps.precision(17);
  eps << spec.bn_epsilon;
  std::map<std::string, std::string> out = {{"opforge_spec_version", std::to_string(kSpecVersion)},
          {"architecture", spec.architecture},
          {"layout", "HWIO"},
          {"image_channels", std::to_string(spec.image_channels)},
          {"input_channels", std::to_string(spec.input_channels())},
          {"channel_order", spec.channel_order == ChannelOrder::bgr ? "BGR" : "RGB"},
          {"quantisation", spec.quantisation == Quantisation::truncate ? "truncate" : "round"},
          {"input_planes", planes.dump()},
          {"one_hot_operators", spec.one_hot_operators ? "true" : "false"},
          {"bn_epsilon", eps.str()},
          {"layers", layers.dump()}};
  if (spec.input_transform == InputTransform::fan_edges) out["input_transform"] = "fan_edges";
  if (spec.in_epsilon != 1e-5) {
    std::ostringstream in_eps;
    in_eps.precision(17);
    in_eps << spec.in_epsilon;
    out["in_epsilon"] = in_eps.str();
  }
  return out;
}

}  // namespace opforge::model
