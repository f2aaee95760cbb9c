#pragma once
// opforge::Image — the pixel container every module passes around.
//
// An Image is a cv::Mat of CV_32FC1 (grey) or CV_32FC3 (colour), interleaved,
// channels in **RGB** order, sRGB-encoded values with nominal range [0, 1]
// (MATLAB's im2double convention). Values outside [0, 1] are legal: several
// operators overshoot, and nothing clips until an image is written as PNG/JPEG.
// Conversions from/to BGR and integer types happen only in core/io.

#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opforge {

using Image = cv::Mat;

/// The largest pixel magnitude opforge accepts. Squared differences of such
/// values, summed over the largest image (2^32 values), stay far inside
/// float32's range, so no operator overflows on valid input.
inline constexpr double kMaxPixelMagnitude = 1e6;

/// Throws opforge::Error unless `img` is a non-empty CV_32FC1 or CV_32FC3 image
/// whose values are all finite and within ±kMaxPixelMagnitude (the one rule for
/// every operator's input and every image written). The message starts with
/// `who` (an operator name, "cannot read 'FILE'") and names the first bad
/// value and where it is (0-based row, column, channel).
void require_image(const Image& img, std::string_view who);

/// The shape half of require_image (non-empty, CV_32FC1/CV_32FC3, 2-D),
/// without reading a value: callers check cheap things (parameters, the
/// memory estimate) before a scan of a huge image.
void require_image_shape(const Image& img, std::string_view who);

/// require_image for images being written or handed back: the same shape
/// rules, and finite values of any magnitude (an operator may overshoot).
void require_finite_image(const Image& img, std::string_view who);

/// Throws Error "WHO: value -0.2 at row 3, column 4, channel 1 is negative;
/// valid: values >= 0 (WHY)" for operators whose mathematics needs it (a
/// logarithm of each value, say).
void require_non_negative(const Image& img, std::string_view who, std::string_view why);

/// Where the first value of a CV_32F image that is not finite or whose
/// magnitude exceeds `bound` sits, if any (lowest row, then column, channel).
struct BadValue {
  int row = 0, column = 0, channel = 0;
  float value = 0;
  bool out_of_range = false;  ///< finite but beyond the bound
};
std::optional<BadValue> first_bad_value(const cv::Mat& img, double bound = kMaxPixelMagnitude);
/// "value nan at row 3, column 4, channel 1 is not finite; valid: ..." for a BadValue.
std::string describe_bad_value(const BadValue& bad);

/// Promotes an Image to float64 with the same channel count.
///
/// Operators compute in double from k/255 for 8-bit sources (OPERATORS.md
/// §0.1). A float32 image that lies entirely on the 8-bit lattice
/// (x == float32(round(255x)/255) for every value) is promoted as exact k/255
/// in double; any other image is promoted value by value. This makes the
/// result independent of whether an 8-bit source arrived as PNG, JPEG or npy.
cv::Mat to_double_exact(const Image& img);

/// One channel of an image as contiguous row-major float64 (rows·cols values).
using Plane = std::vector<double>;

/// Splits an Image into float64 planes with the same promotion rule as
/// to_double_exact (exact k/255 for images on the 8-bit lattice). Operators
/// that work channel by channel start here.
std::vector<Plane> to_double_planes(const Image& img);

/// Interleaves float64 planes (all rows·cols long) back into a float32 Image.
Image from_double_planes(const std::vector<Plane>& planes, int rows, int cols);

/// True when every value of `img` is float32(k/255) for an integer k in 0..255.
bool is_on_8bit_lattice(const Image& img);

/// The 8-bit code k of a value (rounded, clamped to 0..255; NaN gives 0).
inline int lattice_code(float v) {
  const float c = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;  // branch-free, so that loops vectorise
  return static_cast<int>(c * 255.0f + 0.5f);
}

/// The float64 value of 8-bit code k: exactly k/255.
inline double lattice_value(int k) { return static_cast<double>(k) / 255.0; }

/// The float64 promotion of one value of an image (to_double_planes' rule):
/// exactly k/255 when the image is on the 8-bit lattice, else the value
/// itself. For operators that promote pixel by pixel instead of planes.
inline double promote(float v, bool on_lattice) {
  return on_lattice ? lattice_value(lattice_code(v)) : static_cast<double>(v);
}

/// MATLAB/Octave rgb2gray of one pixel (float64): the weights of gray_plane.
inline double gray_of(double r, double g, double b) {
  return 0.298936021293775 * r + 0.587043074451121 * g + 0.114020904255103 * b;
}

/// MATLAB/Octave rgb2gray of float64 RGB planes:
/// 0.298936021293775·R + 0.587043074451121·G + 0.114020904255103·B.
Plane gray_plane(const std::vector<Plane>& rgb);

/// The Y of MATLAB rgb2ycbcr of float64 RGB planes in [0,1]:
/// (16 + 65.481·R + 128.553·G + 24.966·B) / 255.
Plane luma_plane(const std::vector<Plane>& rgb);


}  // namespace opforge
