#pragma once
// Adam (Kingma & Ba, ICLR 2015) with the bias correction as PyTorch's
// torch.optim.Adam applies it, so that the same gradients give the same
// steps: the correction factors in float64, the update
//   m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²,
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
// in the parameters' own precision.

#include <cstdint>
#include <vector>

#include "opforge/learner/tensor.hpp"

namespace opforge::learner {

struct AdamConfig {
  double learning_rate = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double epsilon = 1e-8;
};

template <typename T>
class Adam {
 public:
  Adam(std::vector<Parameter<T>*> parameters, AdamConfig config);
  /// One update from the accumulated gradients (which it leaves alone).
  void step();
  void zero_grad();
  void set_learning_rate(double lr) { config_.learning_rate = lr; }
  const AdamConfig& config() const { return config_; }

  /// The optimiser state, for checkpoints: the step count and m, v per parameter.
  std::int64_t steps() const { return steps_; }
  const std::vector<std::vector<T>>& first_moments() const { return m_; }
  const std::vector<std::vector<T>>& second_moments() const { return v_; }
  /// Restores a checkpoint's state; throws Error when the sizes differ.
  void restore(std::int64_t steps, std::vector<std::vector<T>> m, std::vector<std::vector<T>> v);

 private:
  std::vector<Parameter<T>*> parameters_;
  AdamConfig config_;
  std::int64_t steps_ = 0;
  std::vector<std::vector<T>> m_, v_;
};

}  // namespace opforge::learner
