#pragma once
// Single-image dehazing.
//
// dehaze_dark_channel: K. He, J. Sun, X. Tang, "Single Image Haze Removal
// Using Dark Channel Prior", CVPR 2009 / TPAMI 33(12) 2011, with the
// transmission refined by the guided filter (K. He, J. Sun, X. Tang, "Guided
// Image Filtering", ECCV 2010 / TPAMI 35(6) 2013). Matches sjtrny's
// dehaze_fast.m (OPERATORS.md §7), including its air-light rule: among the
// ⌊0.001·H·W⌋ brightest dark-channel pixels (ties in column-major order), the
// mean colour of those whose intensity equals the maximum exactly.
//
// Input: RGB in [0,1] (8-bit lattice promoted to exact k/255). Output: the
// radiance J, unclipped (it leaves [0,1]), or the refined transmission.

#include <array>

#include "opforge/core/image.hpp"

namespace opforge {

struct DarkChannelParams {
  double omega = 0.95;             ///< haze kept: t = 1 − ω·dark(I/A), (0, 1]
  int window = 15;                 ///< dark-channel window, odd 3..61
  int guided_radius = 15;          ///< guided-filter radius, 1..100
  double guided_eps = 1e-3;        ///< guided-filter regulariser, [1e-6, 1]
  double t_min = 0.1;              ///< transmission floor in the radiance, [0.01, 1]
  double airlight_fraction = 0.001;///< brightest dark-channel fraction searched, (0, 0.1]
};

struct DehazeResult {
  Image radiance;                  ///< CV_32FC3, unclipped
  Image transmission;              ///< CV_32FC1, refined (before the floor)
  std::array<double, 3> airlight;  ///< RGB
};

DehazeResult dehaze_dark_channel(const Image& input, const DarkChannelParams& params = {});

/// The air-light estimate of §7 on its own (also the default of dehaze_nonlocal).
std::array<double, 3> estimate_airlight(const std::vector<Plane>& rgb, int rows, int cols, int window,
                                        double fraction);

}  // namespace opforge
