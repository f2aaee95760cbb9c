// Model files: any bytes. An accepted model has a spec whose layers chain
// from the input planes to the image channels, and runs: a forward pass on
// a tiny input gives an output of the image's shape.

#include <vector>

#include "fuzz_support.hpp"
#include "opforge/model/cpu_executor.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const model::Model m = model::Model::parse(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), "fuzz.safetensors");
    const auto& spec = m.spec();
    fuzz::require(!spec.layers.empty() && spec.layers.front().cin == spec.input_channels(), "first layer takes the input");
    fuzz::require(spec.output_channels() == spec.image_channels, "last layer gives the image");
    fuzz::require(m.weights().size() == spec.layers.size(), "one weight set per layer");
    if (spec.macs_per_pixel() > 1e6) return;  // keep each input fast
    const cv::Mat input(2, 3, CV_32FC(spec.input_channels()), cv::Scalar::all(0.5));
    const cv::Mat out = model::CpuExecutor().forward(m, input);
    fuzz::require(out.rows == 2 && out.cols == 3 && out.channels() == spec.image_channels, "output shape");
  });
}
