#include "opforge/core/image.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "opforge/core/error.hpp"

namespace opforge {

void require_image_shape(const Image& img, std::string_view who) {
  if (img.empty()) throw Error(std::string(who) + ": the input image is empty");
  if (img.depth() != CV_32F) {
    throw Error(std::string(who) + ": expected a float32 image (CV_32F), got depth " +
                std::to_string(img.depth()));
  }
  if (img.channels() != 1 && img.channels() != 3) {
    throw Error(std::string(who) + ": expected 1 (grey) or 3 (RGB) channels, got " +
                std::to_string(img.channels()));
  }
  if (img.dims != 2) throw Error(std::string(who) + ": expected a 2-D image");
}

namespace {

// The first value (lowest row, then position in the row) for which `bad`
// holds. Rows are scanned in parallel; the lowest bad row wins, so the answer
// does not depend on the thread count.
template <typename Bad>
std::optional<BadValue> first_value_where(const cv::Mat& img, Bad bad) {
  CV_Assert(img.depth() == CV_32F && img.dims == 2);
  const int c = img.channels(), n = img.cols * c;
  std::atomic<int> first_row{img.rows};
  tbb::parallel_for(tbb::blocked_range<int>(0, img.rows, 64), [&](const tbb::blocked_range<int>& rows) {
    for (int y = rows.begin(); y < rows.end() && y < first_row.load(std::memory_order_relaxed); ++y) {
      const float* row = img.ptr<float>(y);
      unsigned found = 0;  // not a bool: an integer OR vectorises
      for (int i = 0; i < n; ++i) found |= bad(row[i]) ? 1u : 0u;
      if (!found) continue;
      int seen = first_row.load();
      while (y < seen && !first_row.compare_exchange_weak(seen, y)) {
      }
      return;
    }
  });
  const int y = first_row.load();
  if (y == img.rows) return std::nullopt;
  const float* row = img.ptr<float>(y);
  int i = 0;
  while (!bad(row[i])) ++i;
  return BadValue{.row = y, .column = i / c, .channel = i % c, .value = row[i], .out_of_range = std::isfinite(row[i])};
}

std::string position(const BadValue& bad) {
  char value[32];
  std::snprintf(value, sizeof value, "%g", static_cast<double>(bad.value));
  return std::string("value ") + value + " at row " + std::to_string(bad.row) + ", column " +
         std::to_string(bad.column) + ", channel " + std::to_string(bad.channel);
}

}  // namespace

void require_image(const Image& img, std::string_view who) {
  require_image_shape(img, who);
  if (const auto bad = first_bad_value(img)) throw Error(std::string(who) + ": " + describe_bad_value(*bad));
}

void require_finite_image(const Image& img, std::string_view who) {
  require_image_shape(img, who);
  if (const auto bad = first_bad_value(img, std::numeric_limits<double>::infinity())) {
    throw Error(std::string(who) + ": " + position(*bad) + " is not finite; valid: finite values");
  }
}

void require_non_negative(const Image& img, std::string_view who, std::string_view why) {
  if (const auto bad = first_value_where(img, [](float v) { return v < 0.0f; })) {
    throw Error(std::string(who) + ": " + position(*bad) + " is negative; valid: values >= 0 (" + std::string(why) + ")");
  }
}

std::optional<BadValue> first_bad_value(const cv::Mat& img, double bound) {
  // One comparison a value, which vectorises: false for NaN, and for ±inf
  // since the limit is at most the largest finite float.
  const float limit = static_cast<float>(std::min(bound, static_cast<double>(std::numeric_limits<float>::max())));
  return first_value_where(img, [limit](float v) { return !(std::fabs(v) <= limit); });
}

std::string describe_bad_value(const BadValue& bad) {
  return position(bad) + (bad.out_of_range ? " is out of range" : " is not finite") +
         "; valid: finite values within ±1e6 (images are nominally in [0, 1])";
}

bool is_on_8bit_lattice(const Image& img) {
  const int n = img.cols * img.channels();
  std::atomic<bool> on_lattice{true};
  tbb::parallel_for(tbb::blocked_range<int>(0, img.rows, 64), [&](const tbb::blocked_range<int>& rows) {
    for (int y = rows.begin(); y < rows.end() && on_lattice.load(std::memory_order_relaxed); ++y) {
      const float* row = img.ptr<float>(y);
      unsigned off = 0;
      for (int i = 0; i < n; ++i) off |= static_cast<float>(promote(row[i], true)) != row[i] ? 1u : 0u;
      if (off) {
        on_lattice = false;
        return;
      }
    }
  });
  return on_lattice;
}

std::vector<Plane> to_double_planes(const Image& img) {
  const int c = img.channels();
  std::vector<Plane> planes(c, Plane(static_cast<std::size_t>(img.rows) * img.cols));
  // One pass that promotes every value as if the image were on the lattice
  // and notes whether it is; the rare image that is not is promoted again,
  // value by value.
  std::atomic<bool> on_lattice{true};
  tbb::parallel_for(tbb::blocked_range<int>(0, img.rows, 64), [&](const tbb::blocked_range<int>& rows) {
    unsigned off = 0;
    for (int y = rows.begin(); y < rows.end(); ++y) {
      const float* src = img.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * img.cols;
      for (int k = 0; k < c; ++k) {
        double* dst = planes[k].data() + row;
        for (int x = 0; x < img.cols; ++x) {
          const float v = src[x * c + k];
          const double exact = promote(v, true);
          off |= static_cast<float>(exact) != v ? 1u : 0u;
          dst[x] = exact;
        }
      }
    }
    if (off) on_lattice.store(false, std::memory_order_relaxed);
  });
  if (on_lattice) return planes;
  tbb::parallel_for(tbb::blocked_range<int>(0, img.rows, 64), [&](const tbb::blocked_range<int>& rows) {
    for (int y = rows.begin(); y < rows.end(); ++y) {
      const float* src = img.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * img.cols;
      for (int k = 0; k < c; ++k) {
        for (int x = 0; x < img.cols; ++x) planes[k][row + x] = static_cast<double>(src[x * c + k]);
      }
    }
  });
  return planes;
}

Image from_double_planes(const std::vector<Plane>& planes, int rows, int cols) {
  const int c = static_cast<int>(planes.size());
  Image out(rows, cols, CV_MAKETYPE(CV_32F, c));
  tbb::parallel_for(tbb::blocked_range<int>(0, rows, 64), [&](const tbb::blocked_range<int>& range) {
    for (int y = range.begin(); y < range.end(); ++y) {
      float* d = out.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * cols;
      for (int x = 0; x < cols; ++x) {
        for (int k = 0; k < c; ++k) d[x * c + k] = static_cast<float>(planes[k][row + x]);
      }
    }
  });
  return out;
}

cv::Mat to_double_exact(const Image& img) {
  cv::Mat out(img.rows, img.cols, CV_MAKETYPE(CV_64F, img.channels()));
  const bool lattice = is_on_8bit_lattice(img);
  const int n = img.cols * img.channels();
  for (int y = 0; y < img.rows; ++y) {
    const float* src = img.ptr<float>(y);
    double* dst = out.ptr<double>(y);
    for (int i = 0; i < n; ++i) dst[i] = promote(src[i], lattice);
  }
  return out;
}

Plane gray_plane(const std::vector<Plane>& rgb) {
  CV_Assert(rgb.size() == 3);
  Plane g(rgb[0].size());
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = gray_of(rgb[0][i], rgb[1][i], rgb[2][i]);
  return g;
}

Plane luma_plane(const std::vector<Plane>& rgb) {
  CV_Assert(rgb.size() == 3);
  Plane y(rgb[0].size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    y[i] = (16.0 + 65.481 * rgb[0][i] + 128.553 * rgb[1][i] + 24.966 * rgb[2][i]) / 255.0;
  }
  return y;
}

}  // namespace opforge
