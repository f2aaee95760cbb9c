#include "opforge/model/executor.hpp"

#include <string>

#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace opforge::model {

Image Executor::run(const Model& model, const Image& rgb, std::span<const float> planes) {
  const NetworkSpec& spec = model.spec();
  require_image_shape(rgb, "model '" + model.source() + "'");
  if (rgb.channels() != spec.image_channels) {
    throw Error("model '" + model.source() + "' takes " + std::to_string(spec.image_channels) +
                "-channel images, got " + std::to_string(rgb.channels()));
  }
  model.check_planes(planes);
  // The input planes, the forward pass and the RGB copy of its output.
  const double pixels = double(rgb.rows) * rgb.cols;
  const double bytes = pixels * (spec.input_channels() + spec.output_channels()) * sizeof(float) +
                       peak_bytes(spec, rgb.rows, rgb.cols);
  require_memory("model '" + model.source() + "'",
                 "a " + std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows) + " forward pass", bytes);
  const cv::Mat input = network_input(model, rgb, planes);
  if (spec.weight_inputs() == 0) return image_from_output(model, forward(model, input));
  return image_from_output(model, forward(model.specialised(planes), input));
}

}  // namespace opforge::model
