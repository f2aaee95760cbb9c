#pragma once
// Shared by the model and CLI suites: the published model files, altered
// copies of one, and the level-by-level comparison with a published image.

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "opforge/core/image.hpp"
#include "opforge/core/safetensors.hpp"
#include "opforge/model/model.hpp"
#include "test_support.hpp"

namespace opforge::test {

/// The eleven published CAN files in tests/data/models/.
inline const std::vector<std::string> kPublishedModels = {
    "Dark_channel_dehazing", "L0_smoothing",       "Multiscale_tone_manipulation", "Nonlocal_dehazing",
    "Pencil_drawing",        "Photographic_style", "Relative_total_variation",     "Rudin_Osher_Fatemi",
    "TV_L1",                 "parameterized_L0_smoothing", "combined"};

inline std::string model_path(const std::string& name) {
  return data_path("models/" + name + ".safetensors").string();
}

/// The constant planes the tests run each published model with: the
/// parameterized L0 network at 0.5, the combined one as Detail_manipulation
/// (an operator with no CAN24 file of its own), none for the others.
inline std::vector<float> published_test_planes(const std::string& name, const model::Model& m) {
  if (name == "parameterized_L0_smoothing") return {0.5f};
  if (name == "combined") return m.operator_planes("Detail_manipulation");
  return {};
}

using MetadataEdit = std::function<void(std::map<std::string, std::string>&, std::map<std::string, Tensor>&)>;

/// The bytes of the published L0 file after `change` edits its metadata or
/// tensors.
inline std::vector<std::uint8_t> altered_model(const MetadataEdit& change) {
  const auto st = SafeTensors::load(model_path("L0_smoothing"));
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, info] : st.tensors()) {
    const auto raw = st.bytes(name);
    tensors[name] = Tensor{info.dtype, info.shape, std::vector<std::uint8_t>(raw.begin(), raw.end())};
  }
  auto metadata = st.metadata();
  change(metadata, tensors);
  return encode_safetensors(tensors, metadata);
}

/// 8-bit levels of two images of one size, value by value.
struct LevelComparison {
  long worst = 0;               ///< the largest difference, in levels
  double equal_fraction = 0;    ///< values that agree exactly
};

inline LevelComparison compare_levels(const Image& a, const Image& b) {
  LevelComparison c;
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  const std::size_t n = a.total() * a.channels();
  std::size_t equal = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const long d = std::labs(std::lround(pa[i] * 255) - std::lround(pb[i] * 255));
    c.worst = std::max(c.worst, d);
    equal += d == 0;
  }
  c.equal_fraction = double(equal) / double(n);
  return c;
}

}  // namespace opforge::test
