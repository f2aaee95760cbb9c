#include "opforge/model/model.hpp"

#include <cmath>
#include <opencv2/imgproc.hpp>
#include <set>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/safetensors.hpp"

namespace opforge::model {
namespace {

// The metadata keys spec_metadata writes, and the published files' spec keys
// that the version-1 spec replaces: neither is provenance.
const std::set<std::string>& spec_keys() {
  static const std::set<std::string> keys = {
      "opforge_spec_version", "architecture", "layout", "image_channels", "input_channels", "channel_order",
      "quantisation", "input_planes", "one_hot_operators", "bn_epsilon", "in_epsilon", "input_transform", "layers", "layer_order", "dilations",
      "operator_order", "width", "input", "output", "forward", "normalizer", "activation", "bn_moments",
      "moving_stats_used", "moving_stats_untouched", "moving_stats_note", "dilations_note", "dropped_variables"};
  return keys;
}

void require_finite(std::span<const float> values, const std::string& what) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(what + " holds a non-finite value at element " + std::to_string(i));
    }
  }
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text(1, '[');
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) text.push_back(',');
    text.append(std::to_string(shape[i]));
  }
  text.push_back(']');
  return text;
}

std::vector<float> tensor(const SafeTensors& st, const std::string& name, std::vector<std::int64_t> shape,
                          const std::string& bad) {
  if (!st.contains(name)) throw Error(bad + "tensor '" + name + "' is missing");
  const TensorInfo& info = st.info(name);
  // A scalar may be stored as [] or [1].
  const bool scalar_ok = shape.empty() && info.shape == std::vector<std::int64_t>{1};
  if (info.shape != shape && !scalar_ok) {
    throw Error(bad + "tensor '" + name + "' has shape " + shape_text(info.shape) + " but the layer needs " +
                shape_text(shape));
  }
  try {
    return st.read_f32(name);
  } catch (const Error& e) {
    throw Error(bad + e.what());
  }
}

}  // namespace

Model::Model(NetworkSpec spec, std::vector<LayerWeights> weights, std::string source)
    : spec_(std::move(spec)), weights_(std::move(weights)), source_(std::move(source)) {
  validate_spec(spec_, source_);
  const std::string bad = "model '" + source_ + "': ";
  if (weights_.size() != spec_.layers.size()) {
    throw Error(bad + std::to_string(weights_.size()) + " weight sets for " + std::to_string(spec_.layers.size()) +
                " layers");
  }
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    const LayerWeights& w = weights_[i];
    const std::string where = bad + "layer '" + l.name + "': ";
    const std::size_t kernel = static_cast<std::size_t>(l.kernel_h) * l.kernel_w * l.cin * l.cout;
    if (w.kernel.size() != kernel) throw Error(where + "kernel has " + std::to_string(w.kernel.size()) + " values, needs " + std::to_string(kernel));
    if (w.bias.size() != (l.bias ? static_cast<std::size_t>(l.cout) : 0u)) throw Error(where + "bias has the wrong size");
    const bool normalised = l.normalizer != Normalizer::none;
    const bool in = l.normalizer == Normalizer::instance;
    const std::size_t p = static_cast<std::size_t>(spec_.weight_inputs());
    if (w.beta.size() != (normalised ? static_cast<std::size_t>(l.cout) : 0u)) throw Error(where + "beta has the wrong size");
    if (w.gamma.size() != (in ? static_cast<std::size_t>(l.cout) : 0u)) throw Error(where + "gamma has the wrong size");
    const bool gen_weights = l.generated == Generated::weights, gen_norm = l.generated == Generated::norm;
    if (w.kernel_from_params.size() != (gen_weights ? p * kernel : 0u)) throw Error(where + "weights_from_params has the wrong size");
    if (w.gamma_from_params.size() != (gen_norm ? p * l.cout : 0u) || w.beta_from_params.size() != (gen_norm ? p * l.cout : 0u)) {
      throw Error(where + "gamma_from_params or beta_from_params has the wrong size");
    }
    require_finite(w.kernel, where + "weights");
    require_finite(w.bias, where + "biases");
    require_finite(w.beta, where + "beta");
    require_finite(w.gamma, where + "gamma");
    require_finite(w.kernel_from_params, where + "weights_from_params");
    require_finite(w.gamma_from_params, where + "gamma_from_params");
    require_finite(w.beta_from_params, where + "beta_from_params");
    if (!std::isfinite(w.w0) || !std::isfinite(w.w1)) throw Error(where + "w0 or w1 is not finite");
  }
}

Model Model::parse(std::vector<std::uint8_t> bytes, const std::string& source) {
  const SafeTensors st = SafeTensors::parse(std::move(bytes), source);
  NetworkSpec spec = parse_spec(st.metadata(), source);
  const std::string bad = "model '" + source + "': ";
  std::vector<LayerWeights> weights;
  for (const LayerSpec& l : spec.layers) {
    LayerWeights w;
    w.kernel = tensor(st, l.name + "/weights", {l.kernel_h, l.kernel_w, l.cin, l.cout}, bad);
    if (l.bias) w.bias = tensor(st, l.name + "/biases", {l.cout}, bad);
    if (l.normalizer == Normalizer::adaptive_bn) {
      w.w0 = tensor(st, l.name + "/w0", {}, bad)[0];
      w.w1 = tensor(st, l.name + "/w1", {}, bad)[0];
      w.beta = tensor(st, l.name + "/BatchNorm/beta", {l.cout}, bad);
    }
    if (l.normalizer == Normalizer::instance) {
      w.gamma = tensor(st, l.name + "/InstanceNorm/gamma", {l.cout}, bad);
      w.beta = tensor(st, l.name + "/InstanceNorm/beta", {l.cout}, bad);
    }
    const std::int64_t p = spec.weight_inputs();
    if (l.generated == Generated::weights) {
      w.kernel_from_params = tensor(st, l.name + "/weights_from_params", {p, l.kernel_h, l.kernel_w, l.cin, l.cout}, bad);
    }
    if (l.generated == Generated::norm) {
      w.gamma_from_params = tensor(st, l.name + "/InstanceNorm/gamma_from_params", {p, l.cout}, bad);
      w.beta_from_params = tensor(st, l.name + "/InstanceNorm/beta_from_params", {p, l.cout}, bad);
    }
    weights.push_back(std::move(w));
  }
  Model model(std::move(spec), std::move(weights), source);
  for (const auto& [key, value] : st.metadata()) {
    if (!spec_keys().count(key)) model.provenance_[key] = value;
  }
  return model;
}

void Model::set_provenance(std::map<std::string, std::string> provenance) {
  for (const auto& [key, value] : provenance) {
    if (spec_keys().count(key)) throw Error("model '" + source_ + "': '" + key + "' is a spec key, not provenance");
  }
  provenance_ = std::move(provenance);
}

Model Model::load(const std::filesystem::path& path) { return parse(read_file(path), path.string()); }

std::vector<std::uint8_t> Model::encode() const {
  std::map<std::string, Tensor> tensors;
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    const LayerWeights& w = weights_[i];
    tensors[l.name + "/weights"] = Tensor::f32({l.kernel_h, l.kernel_w, l.cin, l.cout}, w.kernel);
    if (l.bias) tensors[l.name + "/biases"] = Tensor::f32({l.cout}, w.bias);
    if (l.normalizer == Normalizer::adaptive_bn) {
      tensors[l.name + "/w0"] = Tensor::f32({}, std::span<const float>(&w.w0, 1));
      tensors[l.name + "/w1"] = Tensor::f32({}, std::span<const float>(&w.w1, 1));
      tensors[l.name + "/BatchNorm/beta"] = Tensor::f32({l.cout}, w.beta);
    }
    if (l.normalizer == Normalizer::instance) {
      tensors[l.name + "/InstanceNorm/gamma"] = Tensor::f32({l.cout}, w.gamma);
      tensors[l.name + "/InstanceNorm/beta"] = Tensor::f32({l.cout}, w.beta);
    }
    const std::int64_t p = spec_.weight_inputs();
    if (l.generated == Generated::weights) {
      tensors[l.name + "/weights_from_params"] = Tensor::f32({p, l.kernel_h, l.kernel_w, l.cin, l.cout}, w.kernel_from_params);
    }
    if (l.generated == Generated::norm) {
      tensors[l.name + "/InstanceNorm/gamma_from_params"] = Tensor::f32({p, l.cout}, w.gamma_from_params);
      tensors[l.name + "/InstanceNorm/beta_from_params"] = Tensor::f32({p, l.cout}, w.beta_from_params);
    }
  }
  auto metadata = provenance_;
  for (auto& [key, value] : spec_metadata(spec_)) metadata[key] = value;
  return encode_safetensors(tensors, metadata);
}

void Model::save(const std::filesystem::path& path) const { write_file_atomic(path, encode()); }

std::vector<float> Model::operator_planes(const std::string& name) const {
  if (!spec_.one_hot_operators) {
    throw Error("model '" + source_ + "' has no operator planes; --operator applies to a combined model");
  }
  std::vector<float> planes(spec_.planes.size(), 0.0f);
  std::string valid;
  for (std::size_t i = 0; i < spec_.planes.size(); ++i) {
    if (spec_.planes[i].name == name) {
      planes[i] = 1.0f;
      return planes;
    }
    valid += (valid.empty() ? "" : ", ") + spec_.planes[i].name;
  }
  throw Error("model '" + source_ + "' has no operator '" + name + "'; valid: " + valid);
}

namespace {

// v = b + Σ_k A[k]·p[k], in float64, rounded once.
std::vector<float> affine(const std::vector<float>& b, const std::vector<float>& a, std::span<const float> p) {
  std::vector<float> out(b.size());
  for (std::size_t j = 0; j < b.size(); ++j) {
    double v = b[j];
    for (std::size_t k = 0; k < p.size(); ++k) v += double(a[k * b.size() + j]) * p[k];
    out[j] = static_cast<float>(v);
  }
  return out;
}

}  // namespace

std::vector<float> weight_inputs_of(const NetworkSpec& spec, std::span<const float> planes) {
  std::vector<float> p;
  for (std::size_t i = 0; i < spec.planes.size() && i < planes.size(); ++i) {
    if (spec.planes[i].feeds_weights) p.push_back(planes[i]);
  }
  return p;
}

Model Model::specialised(std::span<const float> planes) const {
  check_planes(planes);
  if (spec_.weight_inputs() == 0) return *this;
  const std::vector<float> p = weight_inputs_of(spec_, planes);
  NetworkSpec spec = spec_;
  std::vector<LayerWeights> weights = weights_;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    LayerWeights& w = weights[i];
    if (spec.layers[i].generated == Generated::weights) w.kernel = affine(w.kernel, w.kernel_from_params, p);
    if (spec.layers[i].generated == Generated::norm) {
      w.gamma = affine(w.gamma, w.gamma_from_params, p);
      w.beta = affine(w.beta, w.beta_from_params, p);
    }
    w.kernel_from_params.clear(), w.gamma_from_params.clear(), w.beta_from_params.clear();
    spec.layers[i].generated = Generated::none;
  }
  // The weight inputs are now part of the weights: the planes that remain are the input planes.
  std::vector<InputPlane> kept;
  for (const auto& plane : spec.planes) {
    if (!plane.feeds_weights) kept.push_back(plane);
  }
  spec.planes = std::move(kept);
  Model out(std::move(spec), std::move(weights), source_);
  out.provenance_ = provenance_;
  return out;
}

std::vector<float> Model::planes_for(const std::string& op, const std::map<std::string, double>& params) const {
  if (spec_.one_hot_operators) return operator_planes(op);
  std::vector<float> planes;
  for (const InputPlane& plane : spec_.planes) {
    if (plane.param.empty()) {
      throw Error("model '" + source_ + "': plane '" + plane.name +
                  "' carries no operator parameter; give the plane values (--planes)");
    }
    const auto it = params.find(plane.param);
    if (it == params.end()) {
      throw Error("model '" + source_ + "': plane '" + plane.name + "' needs parameter '" + plane.param + "'");
    }
    try {
      planes.push_back(plane.value_for(it->second));
    } catch (const Error& e) {
      throw Error("model '" + source_ + "': " + e.what());
    }
  }
  return planes;
}

void Model::check_planes(std::span<const float> planes) const {
  const std::size_t want = spec_.planes.size();
  if (planes.size() != want) {
    std::string names;
    for (const auto& p : spec_.planes) names += (names.empty() ? "" : ", ") + p.name;
    throw Error("model '" + source_ + "' takes " + std::to_string(want) + " constant plane" + (want == 1 ? "" : "s") +
                (want ? " (" + names + ")" : "") + ", got " + std::to_string(planes.size()) +
                (spec_.one_hot_operators ? "; or give --operator NAME" : ""));
  }
  for (std::size_t i = 0; i < want; ++i) {
    const InputPlane& p = spec_.planes[i];
    if (!std::isfinite(planes[i]) || planes[i] < p.min || planes[i] > p.max) {
      throw Error("model '" + source_ + "': plane " + std::to_string(i + 1) + " (" + p.name + ") value " +
                  std::to_string(planes[i]) + " is out of range; valid: " + std::to_string(p.min) + ".." +
                  std::to_string(p.max));
    }
  }
}

cv::Mat network_input(const Model& model, const Image& rgb, std::span<const float> planes) {
  const NetworkSpec& spec = model.spec();
  require_image(rgb, "model '" + model.source() + "'");
  if (rgb.channels() != spec.image_channels) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.image_channels) +
                "-channel images, got " + std::to_string(rgb.channels()));
  }
  model.check_planes(planes);
  std::vector<float> constant;  // the planes that enter as input channels
  for (std::size_t i = 0; i < planes.size(); ++i) {
    if (!spec.planes[i].feeds_weights) constant.push_back(planes[i]);
  }
  const int channels = spec.input_channels();
  const bool fan = spec.input_transform == InputTransform::fan_edges;
  const int first_plane = spec.image_channels + (fan ? 1 : 0);
  cv::Mat input(rgb.rows, rgb.cols, CV_32FC(channels));
  const bool swap = spec.channel_order == ChannelOrder::bgr && spec.image_channels == 3;
  const float scale = fan ? 255.0f : 1.0f;
  for (int y = 0; y < rgb.rows; ++y) {
    const float* s = rgb.ptr<float>(y);
    float* d = input.ptr<float>(y);
    for (int x = 0; x < rgb.cols; ++x, s += spec.image_channels, d += channels) {
      for (int c = 0; c < spec.image_channels; ++c) d[c] = s[swap ? 2 - c : c] * scale;
      for (std::size_t p = 0; p < constant.size(); ++p) d[first_plane + p] = constant[p];
    }
  }
  if (fan) {
    // Fan et al.'s edge plane on the [0,255] image, then −128 on all four planes.
    std::vector<double> edge(static_cast<std::size_t>(rgb.rows) * rgb.cols, 0.0);
    const auto at = [&](int y, int x, int c) { return double(input.ptr<float>(y)[x * channels + c]); };
    for (int y = 0; y < rgb.rows; ++y)
      for (int x = 0; x < rgb.cols; ++x)
        for (int c = 0; c < 3; ++c) {
          if (x + 1 < rgb.cols) {
            const double g = std::abs(at(y, x + 1, c) - at(y, x, c));
            edge[std::size_t(y) * rgb.cols + x] += g, edge[std::size_t(y) * rgb.cols + x + 1] += g;
          }
          if (y + 1 < rgb.rows) {
            const double g = std::abs(at(y + 1, x, c) - at(y, x, c));
            edge[std::size_t(y) * rgb.cols + x] += g, edge[std::size_t(y + 1) * rgb.cols + x] += g;
          }
        }
    for (int y = 0; y < rgb.rows; ++y) {
      float* d = input.ptr<float>(y);
      for (int x = 0; x < rgb.cols; ++x, d += channels) {
        d[3] = static_cast<float>(edge[std::size_t(y) * rgb.cols + x] / 3.0 / 4.0);
        for (int c = 0; c < 4; ++c) d[c] -= 128.0f;
      }
    }
  }
  return input;
}

cv::Mat to_network_order(const Model& model, const Image& rgb) {
  const NetworkSpec& spec = model.spec();
  require_image(rgb, "model '" + model.source() + "'");
  if (rgb.channels() != spec.image_channels) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.image_channels) +
                "-channel images, got " + std::to_string(rgb.channels()));
  }
  cv::Mat out;
  if (spec.channel_order != ChannelOrder::bgr || spec.image_channels != 3) {
    out = rgb.clone();
  } else {
    cv::cvtColor(rgb, out, cv::COLOR_RGB2BGR);
  }
  if (spec.input_transform == InputTransform::fan_edges) out *= 255.0;  // Fan et al.'s targets are in [0,255]
  return out;
}

Image image_from_output(const Model& model, const cv::Mat& output) {
  const NetworkSpec& spec = model.spec();
  if (output.channels() != spec.image_channels || output.depth() != CV_32F) {
    throw Error("model '" + model.source() + "': executor returned the wrong shape");
  }
  Image rgb;
  if (spec.channel_order != ChannelOrder::bgr || spec.image_channels != 3) {
    rgb = output.clone();
  } else {
    cv::cvtColor(output, rgb, cv::COLOR_BGR2RGB);
  }
  if (spec.input_transform == InputTransform::fan_edges) rgb /= 255.0;
  return rgb;
}

Image quantise(const Model& model, const Image& raw, int depth) {
  if (depth != 8 && depth != 16) throw Error("quantisation depth " + std::to_string(depth) + " is invalid; valid: 8 or 16");
  const float levels = depth == 8 ? 255.0f : 65535.0f;
  const bool truncate = model.spec().quantisation == Quantisation::truncate;
  Image out(raw.size(), raw.type());
  const int n = raw.cols * raw.channels();
  for (int y = 0; y < raw.rows; ++y) {
    const float* s = raw.ptr<float>(y);
    float* d = out.ptr<float>(y);
    for (int i = 0; i < n; ++i) {
      // Clip first (NaN counts as 0), then float32 arithmetic as numpy did.
      const float v = s[i] > 0.0f ? std::min(s[i], 1.0f) : 0.0f;
      const float scaled = v * levels;
      d[i] = (truncate ? std::trunc(scaled) : std::round(scaled)) / levels;
    }
  }
  return out;
}

}  // namespace opforge::model
