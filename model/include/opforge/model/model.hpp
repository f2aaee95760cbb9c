#pragma once
// A model: the network spec and its weights, one safetensors file.
//
// Loading checks everything an executor relies on, so no executor re-checks:
// the spec (spec.hpp), every tensor a layer needs present with exactly its
// shape, and every weight finite. A file that is not a model gives one
// opforge::Error line naming the file and the problem.

#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "opforge/core/image.hpp"
#include "opforge/model/spec.hpp"

namespace opforge::model {

/// The learned values of one layer.
struct LayerWeights {
  std::vector<float> kernel;  ///< HWIO: [kh][kw][cin][cout]
  std::vector<float> bias;    ///< [cout] when the layer has one, else empty
  float w0 = 1, w1 = 0;       ///< adaptive_bn mixing weights
  std::vector<float> beta;    ///< [cout]: adaptive_bn's or instance norm's offset
  std::vector<float> gamma;   ///< [cout]: instance norm's scale
  /// Generated layers (spec.hpp): A, one block the size of `kernel` (or of
  /// gamma and beta) per weight input; the value is b + Σ_k A[k]·p[k] with b
  /// the plain field above.
  std::vector<float> kernel_from_params, gamma_from_params, beta_from_params;
};

class Model {
 public:
  /// Checks `weights` against `spec` (one entry per layer, exact sizes,
  /// finite values); `source` names the model in errors.
  Model(NetworkSpec spec, std::vector<LayerWeights> weights, std::string source = "model");

  static Model load(const std::filesystem::path& path);
  static Model parse(std::vector<std::uint8_t> bytes, const std::string& source);
  /// Writes a version-1 file (atomically), keeping the provenance metadata
  /// (source, licence, authors, ...) a loaded file carried.
  void save(const std::filesystem::path& path) const;
  std::vector<std::uint8_t> encode() const;

  const NetworkSpec& spec() const { return spec_; }
  const std::vector<LayerWeights>& weights() const { return weights_; }
  const std::string& source() const { return source_; }
  /// Metadata keys that are not part of the spec (provenance, notes).
  const std::map<std::string, std::string>& provenance() const { return provenance_; }
  /// Replaces them (a trained model keeps its starting point's, say); a key
  /// that belongs to the spec is refused.
  void set_provenance(std::map<std::string, std::string> provenance);

  /// The constant planes for `--operator NAME` on a one-hot model: 1 on that
  /// operator's plane, 0 elsewhere. Throws Error listing the valid names.
  std::vector<float> operator_planes(const std::string& name) const;
  /// The constant planes for an operator and its parameter values, as the
  /// network was trained: a one-hot model's operator planes (operator_planes),
  /// otherwise each plane's parameter mapped by its range (InputPlane::value_for).
  /// Throws Error naming a missing parameter, a value outside the trained
  /// range, or a plane that carries no parameter (give its value instead).
  std::vector<float> planes_for(const std::string& op, const std::map<std::string, double>& params) const;
  /// The model for given plane values with every generated value computed
  /// (b + Σ A·p, in float64): no generated layers and no weight-input planes
  /// left, the input planes kept. What an executor runs; a model without
  /// weight inputs is returned as it is.
  Model specialised(std::span<const float> planes) const;
  /// Throws Error unless `planes` holds one value per input plane, each in
  /// its plane's range.
  void check_planes(std::span<const float> planes) const;

 private:
  NetworkSpec spec_;
  std::vector<LayerWeights> weights_;
  std::string source_;
  std::map<std::string, std::string> provenance_;
};

/// The network's input for an RGB [0,1] image: its channels in the model's
/// order (fan_edges: ×255, the edge plane, −128), then the constant input
/// planes (`planes` holds every plane's value; check_planes first; the
/// weight inputs among them are not input channels). H×W×input_channels.
cv::Mat network_input(const Model& model, const Image& rgb, std::span<const float> planes);
/// The weight-input values among a full list of plane values (spec order).
std::vector<float> weight_inputs_of(const NetworkSpec& spec, std::span<const float> planes);
/// The image's channels in the model's order and value scale (×255 for
/// fan_edges): what a training target is compared with. H×W×image_channels.
cv::Mat to_network_order(const Model& model, const Image& rgb);
/// The network's raw output as an RGB Image (the model's channel order undone).
Image image_from_output(const Model& model, const cv::Mat& output);
/// The integer levels the model's quantisation gives, as an Image of exact
/// level/(2^depth − 1) values, so write_image's rounding reproduces them:
/// truncation (published CAN) or rounding, after clipping to [0,1].
Image quantise(const Model& model, const Image& raw, int depth = 8);

}  // namespace opforge::model
