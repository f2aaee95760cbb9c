// PNG decoder: any bytes, a bounded pixel budget. An accepted image holds
// values on the 16-bit lattice in [0, 1] and survives a 16-bit round trip.

#include "fuzz_support.hpp"
#include "opforge/core/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const Image img = decode_png(bytes, "fuzz.png", {.max_pixels = 1u << 20});
    fuzz::require(img.rows >= 1 && img.cols >= 1 && (img.channels() == 1 || img.channels() == 3), "PNG shape");
    double lo = 0, hi = 0;
    cv::minMaxLoc(img.reshape(1), &lo, &hi);
    fuzz::require(lo >= 0 && hi <= 1, "PNG values in [0, 1]");
    const Image again = decode_png(encode_png(img, 16), "again.png");
    fuzz::require(cv::norm(img, again, cv::NORM_INF) <= 0.5 / 65535 + 1e-9, "PNG 16-bit round trip");
  });
}
