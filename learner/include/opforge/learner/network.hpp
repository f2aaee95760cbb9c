#pragma once
// A trainable network built from a model: the spec's layers as learner
// layers (float), the model's weights as their parameters, and back to a
// model file once trained. The parameters keep the model file's tensor
// names, so a trained network saves as a file `opforge infer` runs.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "opforge/learner/layers.hpp"
#include "opforge/model/model.hpp"

namespace opforge::learner {

class Network {
 public:
  explicit Network(const model::Model& model);

  /// The weight inputs p of each sample of the next forward (networks with
  /// generated layers; one vector per sample, spec.weight_inputs() long).
  void set_weight_inputs(std::vector<std::vector<float>> inputs);
  Tensor<float> forward(const Tensor<float>& x) { return layers_.forward(x); }
  Tensor<float> backward(const Tensor<float>& dy) { return layers_.backward(dy); }
  const std::vector<Parameter<float>*>& parameters() { return parameters_; }
  const model::NetworkSpec& spec() const { return spec_; }

  /// The current weights as a model (the original's provenance kept).
  model::Model to_model() const;

 private:
  model::NetworkSpec spec_;
  std::map<std::string, std::string> provenance_;
  std::shared_ptr<std::vector<std::vector<float>>> weight_inputs_;  // shared with the generated layers
  Sequential<float> layers_;
  std::vector<Parameter<float>*> parameters_;  // in layer order
};

/// The spec of one of the three published CAN architectures ("can24_an",
/// "can32_an_parameterized", "can32_an_combined"), as the paper's code
/// builds it, with `operators` naming the combined network's one-hot planes.
/// Throws Error for another name.
model::NetworkSpec can_spec(const std::string& architecture, const std::vector<std::string>& operators = {});

/// SRCNN 9-1-5 (Dong, Loy, He, Tang, TPAMI 2015) on one channel (luma):
/// 9×9 conv → 64, ReLU; 1×1 → 32, ReLU; 5×5 → 1, all with biases.
/// The model file's convolutions pad with zeros ("SAME"); the paper's valid
/// convolutions are the trainer's `loss_border` (the loss ignores the
/// 6-pixel band whose outputs see the padding).
model::NetworkSpec srcnn_spec();

/// Fan et al.'s base network (TPAMI; NETWORKS.md §2) at `width` channels
/// (64 in the paper): the fan_edges input (BGR ×255, edge plane, −128), 20
/// bias-free convolutions (stride 2 at conv3, seven residual blocks with
/// dilations 2, 4, 4, 8, 8, 16, 1, a 4×4 transposed convolution), instance
/// normalisation and ReLU after each but the last, ReLU after the last.
/// `variant` says what the weight inputs `p` (the planes, each with
/// feeds_weights) produce: "fan_decoupled" every convolution's kernel (the
/// weight-learning network, W = A·p + b per layer), "fan_cheap_tuning" only
/// the scale and shift of the last instance normalisation (after conv 19).
model::NetworkSpec fan_spec(const std::string& variant, std::vector<model::InputPlane> weight_inputs, int width = 64);

/// The spec of a network the trainer builds by name: a CAN architecture
/// (can_spec), "srcnn_915", or a Fan et al. variant (fan_spec, with
/// `weight_inputs`). Throws Error listing the valid names.
model::NetworkSpec network_spec(const std::string& architecture, const std::vector<std::string>& operators = {},
                                std::vector<model::InputPlane> weight_inputs = {});

/// Chen et al.'s initialisation: every kernel the identity map (centre tap 1
/// from channel i to channel i for i < min(cin, cout), 0 elsewhere), no
/// bias, w0 = 1, w1 = 0, β = 0. The untrained network is the identity on
/// images in [0, 1]: each layer passes the image's channels through.
model::Model identity_initialised(const model::NetworkSpec& spec);

/// PyTorch's default initialisation of a convolution (Kaiming-uniform with
/// a = √5: U(−1/√fan_in, 1/√fan_in)) for every kernel, and for each
/// weight-input block of a generated kernel as well; instance norms start
/// at γ = 1, β = 0 (their generated parts at 0). Counter-based, keyed by `seed`.
model::Model uniform_initialised(const model::NetworkSpec& spec, std::uint64_t seed);

/// Dong et al.'s initialisation: every weight drawn from N(0, stddev²)
/// (counter-based, keyed by `seed`), biases 0. With `identity_path` channel 0
/// of every layer also gets a centre tap of 1 from channel 0, so the
/// untrained network is within noise of the identity and SRCNN starts at
/// the bicubic baseline instead of at a black image.
model::Model gaussian_initialised(const model::NetworkSpec& spec, double stddev, std::uint64_t seed, bool identity_path);

}  // namespace opforge::learner
