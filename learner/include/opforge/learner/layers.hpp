#pragma once
// The trainer's layers: each a forward pass that keeps what its backward
// pass needs, and a backward pass that adds the parameters' gradients and
// returns the gradient with respect to its input. Every layer exists in
// float (training) and double (the finite-difference checks in the tests).
//
// Reductions (weight gradients, normalisation statistics) are summed in a
// fixed order over fixed blocks of rows, so a result never depends on the
// thread count.

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "opforge/learner/tensor.hpp"

namespace opforge::learner {

template <typename T>
class Layer {
 public:
  virtual ~Layer() = default;
  virtual Tensor<T> forward(const Tensor<T>& x) = 0;
  /// Adds to the parameters' gradients; returns d(loss)/d(input).
  virtual Tensor<T> backward(const Tensor<T>& dy) = 0;
  virtual std::vector<Parameter<T>*> parameters() { return {}; }
};

struct ConvConfig {
  int kernel_h = 3, kernel_w = 3;
  int cin = 0, cout = 0;
  int stride = 1, dilation = 1;
  bool bias = false;
};

/// out[b,y,x,o] = bias[o] + Σ in[b, y·s + (ky−kh/2)·d, x·s + (kx−kw/2)·d, i] · W[ky,kx,i,o]:
/// zero padding of (k/2)·d on every side, so the output is ⌈H/s⌉ × ⌈W/s⌉
/// (the model file's "SAME" for stride 1). W is HWIO, as in the model file.
template <typename T>
class Conv2d final : public Layer<T> {
 public:
  /// `weights` HWIO, `bias` [cout] (or empty without one); the parameters
  /// take the model file's names `prefix/weights` and `prefix/biases`.
  Conv2d(const ConvConfig& config, const std::string& prefix, std::vector<T> weights, std::vector<T> bias = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;
  const ConvConfig& config() const { return config_; }

 private:
  ConvConfig config_;
  Parameter<T> weights_;
  Parameter<T> bias_;
  Tensor<T> input_;
};

struct ConvTransposeConfig {
  int kernel = 4;
  int cin = 0, cout = 0;
  int stride = 2, padding = 1;
  bool bias = false;
};

/// A transposed convolution as PyTorch's ConvTranspose2d (Fan et al.'s 4×4,
/// stride 2, padding 1 upsampling): input pixel (iy, ix) adds
/// in·W[ky,kx,i,o] to output (iy·s − p + ky, ix·s − p + kx); the output is
/// (H − 1)·s − 2p + k rows (2H for 4/2/1). W is stored [k][k][cin][cout] like
/// every kernel here (PyTorch's layout is [cin][cout][k][k]).
template <typename T>
class ConvTranspose2d final : public Layer<T> {
 public:
  ConvTranspose2d(const ConvTransposeConfig& config, const std::string& prefix, std::vector<T> weights,
                  std::vector<T> bias = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;
  /// Off: the plain loops even where the phase decomposition applies (tests).
  void use_phases(bool on) { use_phases_ = on; }

 private:
  int out_size(int in) const { return (in - 1) * config_.stride - 2 * config_.padding + config_.kernel; }
  bool phased() const;
  Tensor<T> phase_forward(const Tensor<T>& x);
  Tensor<T> phase_backward(const Tensor<T>& dy);
  ConvTransposeConfig config_;
  Parameter<T> weights_, bias_;
  Tensor<T> input_;
  bool use_phases_ = true;
  std::vector<std::unique_ptr<Conv2d<T>>> phases_;  // the four phase convolutions of the last forward
};

/// CAN's adaptive normalisation z = w0·y + w1·((y − μ)/√(σ² + ε) + β), with
/// μ and the biased σ² of each channel over the whole batch (N, H and W).
template <typename T>
class AdaptiveBatchNorm final : public Layer<T> {
 public:
  AdaptiveBatchNorm(int channels, const std::string& prefix, T w0, T w1, std::vector<T> beta, double epsilon = 0.001);
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;

 private:
  int channels_;
  double epsilon_;
  Parameter<T> w0_, w1_, beta_;
  Tensor<T> input_, normalised_;  // y and (y − μ)·r
  std::vector<double> inv_std_;   // r per channel
};

/// Instance normalisation with a learned per-channel scale and shift (Fan
/// et al.'s IN layers): each sample's channel normalised by its own mean and
/// biased variance over H×W, y = γ·(x − μ)/√(σ² + ε) + β (PyTorch's
/// InstanceNorm2d(affine=True), ε = 1e-5 by default). Parameters
/// `prefix/gamma` and `prefix/beta`, [channels].
template <typename T>
class InstanceNorm final : public Layer<T> {
 public:
  InstanceNorm(int channels, const std::string& prefix, std::vector<T> gamma, std::vector<T> beta, double epsilon = 1e-5);
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;

 private:
  int channels_;
  double epsilon_;
  Parameter<T> gamma_, beta_;
  Tensor<T> normalised_;          // x̂
  std::vector<double> inv_std_;   // r per (sample, channel)
};

/// max(slope·x, x); slope 0 is ReLU.
template <typename T>
class LeakyRelu final : public Layer<T> {
 public:
  explicit LeakyRelu(T slope) : slope_(slope) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;

 private:
  T slope_;
  Tensor<T> input_;
};

/// y = x + inner(x): a residual connection around a stack of layers (the
/// activation after the sum, if any, is the next layer).
template <typename T>
class Residual final : public Layer<T> {
 public:
  explicit Residual(std::unique_ptr<Layer<T>> inner) : inner_(std::move(inner)) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override { return inner_->parameters(); }

 private:
  std::unique_ptr<Layer<T>> inner_;
};

/// Fan et al.'s weight generation around a layer: every learned value θ of
/// the inner layer is affine in its sample's weight inputs p,
/// θ = b + Σ_k A[k]·p[k] (a fully connected map from p to the layer's
/// weights). It holds b under the inner parameter's name and A as
/// `NAME_from_params` (one leading row per weight input, as the model file);
/// each sample of a batch runs its own instance of the inner layer, and the
/// gradients are added in sample order.
template <typename T>
class Generated final : public Layer<T> {
 public:
  /// Builds the inner layer with the given values for its parameters, in its parameters() order.
  using Factory = std::function<std::unique_ptr<Layer<T>>(const std::vector<std::vector<T>>& values)>;
  /// `base` and `from_params`: b and A for each inner parameter (A empty: zeros).
  /// `inputs` holds p for each sample of the batch the next forward sees.
  Generated(Factory make, const std::vector<std::vector<T>>& base, const std::vector<std::vector<T>>& from_params,
            int weight_inputs, std::shared_ptr<const std::vector<std::vector<T>>> inputs);
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;

 private:
  Factory make_;
  int weight_inputs_;
  std::shared_ptr<const std::vector<std::vector<T>>> inputs_;
  std::vector<Parameter<T>> base_, from_params_;
  std::vector<std::unique_ptr<Layer<T>>> samples_;  // the last forward's inner layers
  std::vector<std::vector<T>> used_inputs_;         // and the p each ran with
};

/// The size bracket of a stride-2 layer and the transposed layer that undoes
/// it: RecordSize notes its input's H×W and passes it on; CropTo cuts its
/// input to that size (the top-left part: a transposed layer gives 2⌈H/2⌉
/// rows, one too many for an odd H) and pads the gradient back with zeros.
template <typename T>
class RecordSize final : public Layer<T> {
 public:
  explicit RecordSize(std::shared_ptr<std::pair<int, int>> slot) : slot_(std::move(slot)) {}
  Tensor<T> forward(const Tensor<T>& x) override {
    *slot_ = {x.h, x.w};
    return x;
  }
  Tensor<T> backward(const Tensor<T>& dy) override { return dy; }

 private:
  std::shared_ptr<std::pair<int, int>> slot_;
};

template <typename T>
class CropTo final : public Layer<T> {
 public:
  explicit CropTo(std::shared_ptr<std::pair<int, int>> slot) : slot_(std::move(slot)) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;

 private:
  std::shared_ptr<std::pair<int, int>> slot_;
  int in_h_ = 0, in_w_ = 0;
};

/// Layers run in order; backward in reverse.
template <typename T>
class Sequential final : public Layer<T> {
 public:
  void add(std::unique_ptr<Layer<T>> layer) { layers_.push_back(std::move(layer)); }
  Tensor<T> forward(const Tensor<T>& x) override;
  Tensor<T> backward(const Tensor<T>& dy) override;
  std::vector<Parameter<T>*> parameters() override;

 private:
  std::vector<std::unique_ptr<Layer<T>>> layers_;
};

/// A loss value and its gradient with respect to the prediction.
template <typename T>
struct Loss {
  double value = 0;
  Tensor<T> grad;
};

/// mean((p − t)²) over every value (PyTorch's MSELoss, reduction "mean").
template <typename T>
Loss<T> mse_loss(const Tensor<T>& prediction, const Tensor<T>& target);
/// mean(|p − t|), gradient sign(p − t)/N with 0 at 0 (PyTorch's L1Loss).
template <typename T>
Loss<T> l1_loss(const Tensor<T>& prediction, const Tensor<T>& target);

}  // namespace opforge::learner
