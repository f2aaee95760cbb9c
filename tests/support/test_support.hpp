#pragma once
// Shared helpers for the test suites.

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "opforge/core/error.hpp"
#include "opforge/core/image.hpp"
#include "opforge/core/io.hpp"

namespace opforge::test {

/// The message of the opforge::Error `fn` throws, or "(no error)".
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

/// A fixture under tests/data/.
inline std::filesystem::path data_path(const std::string& relative) {
  return std::filesystem::path(OPFORGE_TEST_DATA_DIR) / relative;
}

/// A fresh, empty directory for one test (removed and recreated).
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("opforge-test-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// What the reference PNGs store: clip to [0,1], round(x·65535), back to float.
inline Image quantize16(const Image& img) {
  const auto bytes = encode_png(img, 16);
  return decode_png(bytes, "quantize16");
}

/// A deterministic, non-trivial test image (smooth ramps + edges + texture).
inline Image synthetic_image(int rows, int cols, int channels) {
  Image img(rows, cols, CV_MAKETYPE(CV_32F, channels));
  for (int y = 0; y < rows; ++y) {
    float* p = img.ptr<float>(y);
    for (int x = 0; x < cols; ++x) {
      for (int c = 0; c < channels; ++c) {
        const int k = ((x * 7 + y * 13 + c * 31) % 97) + (x > cols / 2 ? 120 : 0) + ((x / 9 + y / 7) % 2) * 30;
        p[x * channels + c] = static_cast<float>((k % 256) / 255.0);
      }
    }
  }
  return img;
}

/// Runs `make` with TBB limited to 1 and then 2 workers and expects
/// bit-identical images (the determinism every operator promises).
template <typename Make>
void expect_bit_identical_on_1_and_2_threads(Make&& make) {
  Image one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = make();
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = make();
  }
  ASSERT_EQ(one.size(), two.size());
  ASSERT_EQ(one.type(), two.type());
  EXPECT_EQ(std::memcmp(one.data, two.data, one.total() * one.elemSize()), 0);
}

}  // namespace opforge::test
