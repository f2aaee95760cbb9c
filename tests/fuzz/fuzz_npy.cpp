// .npy decoder: any bytes. An accepted array is float32 H×W×C with finite
// values within ±1e6, and re-encodes to bytes that decode to the same array.

#include <cstring>

#include "fuzz_support.hpp"
#include "opforge/core/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const cv::Mat m = decode_npy(bytes, "fuzz.npy", {.max_pixels = 1u << 20});
    fuzz::require(m.depth() == CV_32F && m.rows >= 1 && m.cols >= 1 && m.channels() >= 1 && m.channels() <= 4, "npy shape");
    fuzz::require(!first_bad_value(m), "npy values finite and within ±1e6");
    const cv::Mat again = decode_npy(encode_npy(m), "again.npy");
    fuzz::require(again.size() == m.size() && again.type() == m.type() &&
                      std::memcmp(again.data, m.data, m.total() * m.elemSize()) == 0,
                  "npy round trip");
  });
}
