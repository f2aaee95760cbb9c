#pragma once
// Executors run a model's network on one image. The CPU executor
// (cpu_executor.hpp) is the reference every other executor (Vulkan) is
// tested against.

#include <memory>
#include <span>
#include <string>

#include "opforge/core/image.hpp"
#include "opforge/model/model.hpp"

namespace opforge::model {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::string name() const = 0;

  /// The network's raw output (unclipped, unquantised) for an RGB [0,1]
  /// image and the model's constant planes, as an RGB Image: the model's
  /// channel order is applied on the way in and undone on the way out.
  /// Everything is checked, the memory estimate included (opforge::Error
  /// naming what it needs and what is available), before anything large is
  /// allocated.
  Image run(const Model& model, const Image& rgb, std::span<const float> planes = {});

  /// Peak bytes forward() allocates for an H×W image, besides its input.
  virtual double peak_bytes(const NetworkSpec& spec, int rows, int cols) const = 0;

  /// The network on its own input layout: H×W×input_channels float32 in the
  /// model's channel order → H×W×output_channels.
  virtual cv::Mat forward(const Model& model, const cv::Mat& input) = 0;
};

}  // namespace opforge::model
