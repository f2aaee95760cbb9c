#include "opforge/learner/adam.hpp"

#include <cmath>
#include <string>

#include "opforge/core/error.hpp"

namespace opforge::learner {

template <typename T>
Adam<T>::Adam(std::vector<Parameter<T>*> parameters, AdamConfig config)
    : parameters_(std::move(parameters)), config_(config) {
  for (const auto* p : parameters_) {
    m_.emplace_back(p->value.size(), T(0));
    v_.emplace_back(p->value.size(), T(0));
  }
}

template <typename T>
void Adam<T>::step() {
  ++steps_;
  const double correction1 = 1.0 - std::pow(config_.beta1, double(steps_));
  const double correction2_sqrt = std::sqrt(1.0 - std::pow(config_.beta2, double(steps_)));
  const T step_size = T(config_.learning_rate / correction1);
  const T b1 = T(config_.beta1), b2 = T(config_.beta2), eps = T(config_.epsilon), c2 = T(correction2_sqrt);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    Parameter<T>& p = *parameters_[k];
    std::vector<T>& m = m_[k];
    std::vector<T>& v = v_[k];
    for (std::size_t i = 0; i < p.value.size(); ++i) {
      const T g = p.grad[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      p.value[i] -= step_size * m[i] / (std::sqrt(v[i]) / c2 + eps);
    }
  }
}

template <typename T>
void Adam<T>::zero_grad() {
  for (auto* p : parameters_) p->zero_grad();
}

template <typename T>
void Adam<T>::restore(std::int64_t steps, std::vector<std::vector<T>> m, std::vector<std::vector<T>> v) {
  if (steps < 0 || m.size() != parameters_.size() || v.size() != parameters_.size()) {
    throw Error("Adam state does not match the network: " + std::to_string(m.size()) + " moments for " +
                std::to_string(parameters_.size()) + " parameters");
  }
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    if (m[k].size() != parameters_[k]->value.size() || v[k].size() != parameters_[k]->value.size()) {
      throw Error("Adam state of '" + parameters_[k]->name + "' has the wrong size");
    }
  }
  steps_ = steps;
  m_ = std::move(m);
  v_ = std::move(v);
}

template class Adam<float>;
template class Adam<double>;

}  // namespace opforge::learner
