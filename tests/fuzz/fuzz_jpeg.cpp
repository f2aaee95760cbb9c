// JPEG decoder: any bytes, a bounded pixel budget. An accepted image is on
// the 8-bit lattice, grey or RGB.

#include "fuzz_support.hpp"
#include "opforge/core/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const Image img = decode_jpeg(bytes, "fuzz.jpg", {.max_pixels = 1u << 20});
    fuzz::require(img.rows >= 1 && img.cols >= 1 && (img.channels() == 1 || img.channels() == 3), "JPEG shape");
    fuzz::require(is_on_8bit_lattice(img), "JPEG values on the 8-bit lattice");
  });
}
