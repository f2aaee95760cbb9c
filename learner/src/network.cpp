#include "opforge/learner/network.hpp"

#include <functional>
#include <memory>

#include <cmath>

#include "opforge/core/error.hpp"
#include "opforge/core/rng.hpp"

namespace opforge::learner {

Network::Network(const model::Model& m)
    : spec_(m.spec()),
      provenance_(m.provenance()),
      weight_inputs_(std::make_shared<std::vector<std::vector<float>>>()) {
  const int p = spec_.weight_inputs();
  // Where each residual group opens: the layer a later layer adds the input of.
  std::map<std::string, std::size_t> closes;  // opening layer name → closing layer index
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    if (!spec_.layers[i].residual_from.empty()) closes[spec_.layers[i].residual_from] = i;
  }
  std::vector<std::unique_ptr<Sequential<float>>> groups;  // open residual groups, innermost last
  std::vector<std::shared_ptr<std::pair<int, int>>> brackets;  // stride-2 input sizes not yet undone
  const auto add = [&](std::unique_ptr<Layer<float>> layer) {
    if (groups.empty()) {
      layers_.add(std::move(layer));
    } else {
      groups.back()->add(std::move(layer));
    }
  };
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const model::LayerSpec& l = spec_.layers[i];
    const model::LayerWeights& w = m.weights()[i];
    if (closes.count(l.name)) groups.push_back(std::make_unique<Sequential<float>>());
    if (l.stride == 2 && !l.transposed) {
      brackets.push_back(std::make_shared<std::pair<int, int>>());
      add(std::make_unique<RecordSize<float>>(brackets.back()));
    }
    // The convolution, plain or generated from the weight inputs.
    std::function<std::unique_ptr<Layer<float>>(const std::vector<std::vector<float>>&)> make_conv;
    if (l.transposed) {
      make_conv = [l](const std::vector<std::vector<float>>& v) -> std::unique_ptr<Layer<float>> {
        return std::make_unique<ConvTranspose2d<float>>(ConvTransposeConfig{4, l.cin, l.cout, 2, 1, l.bias}, l.name, v[0],
                                                        l.bias ? v[1] : std::vector<float>{});
      };
    } else {
      make_conv = [l](const std::vector<std::vector<float>>& v) -> std::unique_ptr<Layer<float>> {
        return std::make_unique<Conv2d<float>>(ConvConfig{l.kernel_h, l.kernel_w, l.cin, l.cout, l.stride, l.dilation, l.bias},
                                               l.name, v[0], l.bias ? v[1] : std::vector<float>{});
      };
    }
    std::vector<std::vector<float>> conv_values = {w.kernel};
    if (l.bias) conv_values.push_back(w.bias);
    if (l.generated == model::Generated::weights) {
      add(std::make_unique<Generated<float>>(make_conv, conv_values, std::vector<std::vector<float>>{w.kernel_from_params}, p,
                                             weight_inputs_));
    } else {
      add(make_conv(conv_values));
    }
    if (l.transposed) {
      add(std::make_unique<CropTo<float>>(brackets.back()));
      brackets.pop_back();
    }
    if (l.normalizer == model::Normalizer::adaptive_bn) {
      add(std::make_unique<AdaptiveBatchNorm<float>>(l.cout, l.name, w.w0, w.w1, w.beta, spec_.bn_epsilon));
    }
    if (l.normalizer == model::Normalizer::instance) {
      const std::string prefix = l.name + "/InstanceNorm";
      const double eps = spec_.in_epsilon;
      const int c = l.cout;
      auto make_norm = [prefix, eps, c](const std::vector<std::vector<float>>& v) -> std::unique_ptr<Layer<float>> {
        return std::make_unique<InstanceNorm<float>>(c, prefix, v[0], v[1], eps);
      };
      if (l.generated == model::Generated::norm) {
        add(std::make_unique<Generated<float>>(make_norm, std::vector<std::vector<float>>{w.gamma, w.beta},
                                               std::vector<std::vector<float>>{w.gamma_from_params, w.beta_from_params}, p,
                                               weight_inputs_));
      } else {
        add(make_norm({w.gamma, w.beta}));
      }
    }
    if (!l.residual_from.empty()) {
      // The group opened at residual_from closes here: x + inner(x), then this layer's activation.
      std::unique_ptr<Sequential<float>> inner = std::move(groups.back());
      groups.pop_back();
      add(std::make_unique<Residual<float>>(std::move(inner)));
    }
    if (l.activation == model::Activation::leaky_relu) add(std::make_unique<LeakyRelu<float>>(l.negative_slope));
    if (l.activation == model::Activation::relu) add(std::make_unique<LeakyRelu<float>>(0.0f));
  }
  parameters_ = layers_.parameters();
}

void Network::set_weight_inputs(std::vector<std::vector<float>> inputs) { *weight_inputs_ = std::move(inputs); }

model::Model Network::to_model() const {
  std::map<std::string, const Parameter<float>*> by_name;
  for (const auto* p : parameters_) by_name[p->name] = p;
  const auto value = [&](const std::string& name) -> const std::vector<float>& {
    const auto it = by_name.find(name);
    if (it == by_name.end()) throw Error("network has no parameter '" + name + "'");
    return it->second->value;
  };
  std::vector<model::LayerWeights> weights;
  for (const auto& l : spec_.layers) {
    model::LayerWeights w;
    w.kernel = value(l.name + "/weights");
    if (l.bias) w.bias = value(l.name + "/biases");
    if (l.generated == model::Generated::weights) w.kernel_from_params = value(l.name + "/weights_from_params");
    if (l.normalizer == model::Normalizer::adaptive_bn) {
      w.w0 = value(l.name + "/w0")[0];
      w.w1 = value(l.name + "/w1")[0];
      w.beta = value(l.name + "/BatchNorm/beta");
    }
    if (l.normalizer == model::Normalizer::instance) {
      w.gamma = value(l.name + "/InstanceNorm/gamma");
      w.beta = value(l.name + "/InstanceNorm/beta");
      if (l.generated == model::Generated::norm) {
        w.gamma_from_params = value(l.name + "/InstanceNorm/gamma_from_params");
        w.beta_from_params = value(l.name + "/InstanceNorm/beta_from_params");
      }
    }
    weights.push_back(std::move(w));
  }
  model::Model out(spec_, std::move(weights), "trained");
  out.set_provenance(provenance_);
  return out;
}

model::NetworkSpec can_spec(const std::string& architecture, const std::vector<std::string>& operators) {
  model::NetworkSpec spec;
  spec.architecture = architecture;
  spec.channel_order = model::ChannelOrder::bgr;  // the paper's code reads images with cv2
  spec.quantisation = model::Quantisation::truncate;
  int width = 32;
  std::vector<int> dilations = {1, 2, 4, 8, 16, 32, 64, 128, 1};
  if (architecture == "can24_an") {
    width = 24;
    dilations = {1, 2, 4, 8, 16, 32, 64, 1};  // no rate-128 layer
  } else if (architecture == "can32_an_parameterized") {
    spec.planes.push_back(model::InputPlane::unmapped("parameter", "the operator's parameter, normalised to [0, 1]"));
  } else if (architecture == "can32_an_combined") {
    if (operators.empty()) throw Error("can32_an_combined needs the names of its operators");
    for (const auto& name : operators) spec.planes.push_back(model::InputPlane::unmapped(name, "one-hot operator code (blends sum to 1)"));
    spec.one_hot_operators = true;
  } else {
    throw Error("unknown CAN architecture '" + architecture +
                "'; valid: can24_an, can32_an_parameterized, can32_an_combined");
  }
  int cin = spec.input_channels();
  for (std::size_t i = 0; i < dilations.size(); ++i) {
    model::LayerSpec l;
    l.name = i + 1 == dilations.size() ? "g_conv9" : "g_conv" + std::to_string(i + 1);
    l.cin = cin;
    l.cout = width;
    l.dilation = dilations[i];
    l.normalizer = model::Normalizer::adaptive_bn;
    l.activation = model::Activation::leaky_relu;
    spec.layers.push_back(l);
    cin = width;
  }
  model::LayerSpec last;
  last.name = "g_conv_last";
  last.kernel_h = last.kernel_w = 1;
  last.cin = width;
  last.cout = 3;
  last.bias = true;
  spec.layers.push_back(last);
  return spec;
}

model::NetworkSpec srcnn_spec() {
  model::NetworkSpec spec;
  spec.architecture = "srcnn_915";
  spec.image_channels = 1;
  spec.channel_order = model::ChannelOrder::rgb;
  spec.quantisation = model::Quantisation::round;
  const auto layer = [](const char* name, int k, int cin, int cout, bool relu) {
    model::LayerSpec l;
    l.name = name;
    l.kernel_h = l.kernel_w = k;
    l.cin = cin;
    l.cout = cout;
    l.bias = true;
    l.activation = relu ? model::Activation::relu : model::Activation::none;
    return l;
  };
  spec.layers = {layer("conv1", 9, 1, 64, true), layer("conv2", 1, 64, 32, true), layer("conv3", 5, 32, 1, false)};
  return spec;
}

model::NetworkSpec fan_spec(const std::string& variant, std::vector<model::InputPlane> weight_inputs, int width) {
  if (variant != "fan_decoupled" && variant != "fan_cheap_tuning") {
    throw Error("unknown Fan et al. variant '" + variant + "'; valid: fan_decoupled, fan_cheap_tuning");
  }
  if (weight_inputs.empty()) throw Error(variant + " needs at least one weight input (the operator parameter)");
  model::NetworkSpec spec;
  spec.architecture = variant;
  spec.channel_order = model::ChannelOrder::bgr;  // cv2 images, as the released script
  spec.quantisation = model::Quantisation::round;
  spec.input_transform = model::InputTransform::fan_edges;
  for (auto& p : weight_inputs) p.feeds_weights = true;
  spec.planes = std::move(weight_inputs);
  const bool all = variant == "fan_decoupled";
  const auto layer = [&](std::string name, int cin, int cout, int stride = 1, int dilation = 1) {
    model::LayerSpec l;
    l.name = std::move(name);
    l.cin = cin;
    l.cout = cout;
    l.stride = stride;
    l.dilation = dilation;
    l.normalizer = model::Normalizer::instance;
    l.activation = model::Activation::relu;
    l.generated = all ? model::Generated::weights : model::Generated::none;
    return l;
  };
  spec.layers.push_back(layer("conv1", 4, width));
  spec.layers.push_back(layer("conv2", width, width));
  spec.layers.push_back(layer("conv3", width, width, 2));
  const int dilations[] = {2, 4, 4, 8, 8, 16, 1};
  for (int b = 0; b < 7; ++b) {
    const std::string block = "res" + std::to_string(b + 1);
    spec.layers.push_back(layer(block + "a", width, width, 1, dilations[b]));
    model::LayerSpec second = layer(block + "b", width, width, 1, dilations[b]);
    second.residual_from = block + "a";
    spec.layers.push_back(second);
  }
  model::LayerSpec up = layer("deconv18", width, width);
  up.kernel_h = up.kernel_w = 4;
  up.stride = 2;
  up.transposed = true;
  spec.layers.push_back(up);
  model::LayerSpec conv19 = layer("conv19", width, width);
  if (!all) conv19.generated = model::Generated::norm;  // cheap tuning: the last IN only
  spec.layers.push_back(conv19);
  model::LayerSpec last = layer("conv20", width, 3);
  last.normalizer = model::Normalizer::none;
  spec.layers.push_back(last);
  return spec;
}

model::NetworkSpec network_spec(const std::string& architecture, const std::vector<std::string>& operators,
                                std::vector<model::InputPlane> weight_inputs) {
  if (architecture == "srcnn_915") return srcnn_spec();
  if (architecture == "fan_decoupled" || architecture == "fan_cheap_tuning") {
    return fan_spec(architecture, std::move(weight_inputs));
  }
  if (architecture == "can24_an" || architecture == "can32_an_parameterized" || architecture == "can32_an_combined") {
    return can_spec(architecture, operators);
  }
  throw Error("unknown network '" + architecture +
              "'; valid: can24_an, can32_an_parameterized, can32_an_combined, srcnn_915, fan_decoupled, fan_cheap_tuning");
}

namespace {

// A normaliser that starts neutral, whatever initialises the kernels:
// adaptive w0 = 1, w1 = 0, β = 0; instance γ = 1, β = 0, generated parts 0.
void neutral_normaliser(const model::LayerSpec& l, std::size_t weight_inputs, model::LayerWeights& w) {
  if (l.normalizer == model::Normalizer::adaptive_bn) {
    w.w0 = 1.0f;
    w.w1 = 0.0f;
    w.beta.assign(l.cout, 0.0f);
  }
  if (l.normalizer == model::Normalizer::instance) {
    w.gamma.assign(l.cout, 1.0f);
    w.beta.assign(l.cout, 0.0f);
    if (l.generated == model::Generated::norm) {
      w.gamma_from_params.assign(weight_inputs * l.cout, 0.0f);
      w.beta_from_params.assign(weight_inputs * l.cout, 0.0f);
    }
  }
}

}  // namespace

model::Model gaussian_initialised(const model::NetworkSpec& spec, double stddev, std::uint64_t seed, bool identity_path) {
  std::vector<model::LayerWeights> weights;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    const CounterRng rng(seed, 100 + i);  // one stream per layer
    model::LayerWeights w;
    w.kernel.resize(static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout);
    for (std::size_t k = 0; k < w.kernel.size(); ++k) w.kernel[k] = static_cast<float>(stddev * rng.normal(k));
    if (identity_path) {
      const std::size_t centre = static_cast<std::size_t>(l.kernel_h / 2) * l.kernel_w + l.kernel_w / 2;
      w.kernel[centre * l.cin * l.cout] += 1.0f;  // input channel 0 → output channel 0
    }
    if (l.bias) w.bias.assign(l.cout, 0.0f);
    neutral_normaliser(l, static_cast<std::size_t>(spec.weight_inputs()), w);
    weights.push_back(std::move(w));
  }
  return model::Model(spec, std::move(weights), "initial " + spec.architecture);
}

model::Model uniform_initialised(const model::NetworkSpec& spec, std::uint64_t seed) {
  const std::size_t p = static_cast<std::size_t>(spec.weight_inputs());
  std::vector<model::LayerWeights> weights;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    const CounterRng rng(seed, 200 + i);
    const double bound = 1.0 / std::sqrt(double(l.kernel_h) * l.kernel_w * (l.transposed ? l.cout : l.cin));
    model::LayerWeights w;
    const std::size_t size = static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout;
    const auto uniform = [&](std::size_t k) { return static_cast<float>(bound * (2 * rng.uniform(k) - 1)); };
    w.kernel.resize(size);
    for (std::size_t k = 0; k < size; ++k) w.kernel[k] = uniform(k);
    if (l.generated == model::Generated::weights) {
      w.kernel_from_params.resize(p * size);
      for (std::size_t k = 0; k < p * size; ++k) w.kernel_from_params[k] = uniform(size + k);
    }
    if (l.bias) {
      w.bias.resize(l.cout);
      for (int o = 0; o < l.cout; ++o) w.bias[o] = uniform((1 + p) * size + o);
    }
    neutral_normaliser(l, p, w);
    weights.push_back(std::move(w));
  }
  return model::Model(spec, std::move(weights), "initial " + spec.architecture);
}

model::Model identity_initialised(const model::NetworkSpec& spec) {
  std::vector<model::LayerWeights> weights;
  for (const auto& l : spec.layers) {
    model::LayerWeights w;
    w.kernel.assign(static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout, 0.0f);
    const std::size_t centre = static_cast<std::size_t>(l.kernel_h / 2) * l.kernel_w + l.kernel_w / 2;
    for (int i = 0; i < std::min(l.cin, l.cout); ++i) w.kernel[(centre * l.cin + i) * l.cout + i] = 1.0f;
    if (l.bias) w.bias.assign(l.cout, 0.0f);
    neutral_normaliser(l, static_cast<std::size_t>(spec.weight_inputs()), w);
    weights.push_back(std::move(w));
  }
  return model::Model(spec, std::move(weights), "initial " + spec.architecture);
}

}  // namespace opforge::learner
