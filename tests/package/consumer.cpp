// Runs one operator through the installed headers and libraries: the typed
// API and the registry must agree, and L0 smoothing must flatten a noisy step
// while keeping the step (the noise is ±0.02).
#include <cmath>
#include <cstdio>

#include "opforge/operators/l0_smooth.hpp"
#include "opforge/operators/registry.hpp"

int main() {
  opforge::Image img(32, 48, CV_32FC3);
  cv::RNG rng(7);
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) {
      const float base = x < img.cols / 2 ? 0.2f : 0.8f;
      for (int c = 0; c < 3; ++c) img.at<cv::Vec3f>(y, x)[c] = base + static_cast<float>(rng.uniform(-0.02, 0.02));
    }
  }
  const opforge::Image typed = opforge::l0_smooth(img, {.lambda = 0.05});
  const opforge::OperatorEntry& entry = opforge::find_operator("l0_smooth");
  const opforge::Image registered = entry.apply(img, entry.resolve({{"lambda", "0.05"}}), {});
  const double between = cv::norm(typed, registered, cv::NORM_INF);
  const double left = typed.at<cv::Vec3f>(16, 5)[0], right = typed.at<cv::Vec3f>(16, 40)[0];
  const double flat = std::abs(typed.at<cv::Vec3f>(10, 3)[1] - typed.at<cv::Vec3f>(20, 20)[1]);
  std::printf("l0_smooth through the installed package: left %.4f right %.4f, flat within %.2g, typed vs registry %.2g\n",
              left, right, flat, between);
  const bool ok = between == 0 && std::abs(left - 0.2) < 0.02 && std::abs(right - 0.8) < 0.02 && flat < 5e-3;
  return ok ? 0 : 1;
}
