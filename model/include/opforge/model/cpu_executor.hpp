#pragma once
// The CPU forward pass: float32 throughout, with each normalised layer's
// statistics summed in float64 in a fixed order, so the result is the same
// bit for bit whatever the thread count.
//
// Convolutions run as register-blocked direct kernels over rows (AVX2+FMA
// where the CPU has them, portable loops elsewhere; the same arithmetic
// order in both up to FMA contraction). Activations are streamed layer by
// layer: a layer whose input and output widths agree overwrites its input in
// place, holding back only the rows a later output row still reads, so a
// network needs about one activation buffer (H·W·width floats) plus the
// input planes, not one per layer.

#include <optional>

#include "opforge/model/executor.hpp"

namespace opforge::model {

class CpuExecutor final : public Executor {
 public:
  enum class Kernels { automatic, portable };
  explicit CpuExecutor(Kernels kernels = Kernels::automatic);

  std::string name() const override;
  cv::Mat forward(const Model& model, const cv::Mat& input) override;

  double peak_bytes(const NetworkSpec& spec, int rows, int cols) const override;
  /// Whether the AVX2+FMA kernels run on this CPU.
  static bool has_avx2();

 private:
  bool vectorised_;
};

}  // namespace opforge::model
