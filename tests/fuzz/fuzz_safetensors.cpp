// safetensors parser: any bytes. Every tensor of an accepted file lies inside
// it, its byte size matches its shape and dtype, and F32 tensors read back.

#include <vector>

#include "fuzz_support.hpp"
#include "opforge/core/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [size](std::span<const std::uint8_t> bytes) {
    const SafeTensors st = SafeTensors::parse(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), "fuzz.safetensors");
    for (const auto& [name, info] : st.tensors()) {
      fuzz::require(info.begin <= info.end && info.end <= size, "tensor inside the file");
      fuzz::require(st.bytes(name).size() == info.end - info.begin, "tensor byte range");
      if (info.dtype == "F32") {
        fuzz::require(st.read_f32(name).size() == info.element_count(), "F32 element count");
      }
    }
  });
}
