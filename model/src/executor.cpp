#include "opforge/model/executor.hpp"

namespace opforge::model {

Image Executor::run(const Model& model, const Image& rgb, std::span<const float> planes) {
  return image_from_output(model, forward(model, network_input(model, rgb, planes)));
}

}  // namespace opforge::model
