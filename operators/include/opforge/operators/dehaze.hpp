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
#include <filesystem>
#include <optional>
#include <vector>

#include "opforge/core/image.hpp"

namespace opforge {

struct DarkChannelParams {
  double omega = 0.95;             ///< haze removed: t = 1 − ω·dark(I/A)
  int window = 15;                 ///< dark-channel window (odd)
  int guided_radius = 15;          ///< guided-filter radius
  double guided_eps = 1e-3;        ///< guided-filter regulariser
  double t_min = 0.1;              ///< transmission floor in the radiance
  double airlight_fraction = 0.001;///< brightest dark-channel fraction searched
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

// ---------------------------------------------------------------------------
// dehaze_nonlocal: D. Berman, T. Treibitz, S. Avidan, "Non-Local Image
// Dehazing", CVPR 2016; follows the authors' non_local_dehazing.m,
// wls_optimization.m and adjust.m (OPERATORS.md §8): haze lines by nearest
// direction from the air-light, per-line transmission, a weighted
// least-squares regularisation (GridCholesky), radiance and contrast stretch.
//
// Haze-line directions: the authors' table (TR1000.txt) carries a
// non-commercial licence and is not part of opforge. The default is
// opforge's own deterministic near-uniform set: a 1000-point Fibonacci lattice
// on the sphere (default_haze_line_directions). Users who have the authors'
// table name it with `directions` to reproduce their outputs exactly.

using Direction = std::array<double, 3>;

/// n points of the spherical Fibonacci lattice: z_i = 1 − (2i+1)/n,
/// φ_i = i·π(3 − √5), (√(1−z²)·cos φ, √(1−z²)·sin φ, z).
std::vector<Direction> default_haze_line_directions(int count = 1000);

/// A direction table: one "x y z" row per direction (the authors' format).
std::vector<Direction> read_direction_table(const std::filesystem::path& path);

/// Exact nearest direction (squared Euclidean distance summed dx² + dy² + dz²,
/// ties to the lower index) through a certified grid: each cell of a 3-D grid
/// over [−1.05, 1.05]³ keeps every direction that can be nearest to some point
/// of the cell, so the answer equals brute force.
class NearestDirection {
 public:
  explicit NearestDirection(std::vector<Direction> directions);
  int nearest(const Direction& u) const;
  /// Brute force over all directions: the reference the grid is tested against.
  int nearest_brute_force(const Direction& u) const;
  std::size_t size() const { return directions_.size(); }

 private:
  int cell_of(double v) const;
  std::vector<Direction> directions_;
  std::vector<std::vector<int>> cells_;
};

struct NonLocalDehazeParams {
  std::optional<std::array<double, 3>> airlight;  ///< RGB; unset = the §7 estimate
  double gamma = 1.0;        ///< radiometric correction I^γ
  double lambda = 0.1;       ///< regularisation weight
  double trans_min = 0.1;    ///< transmission floor
  double leave_haze = 1.06;  ///< haze left in
  int min_cluster = 50;      ///< haze-line size of full confidence
  double stretch_low = 0.005, stretch_high = 0.995;  ///< percentiles of the final contrast stretch, low < high
  std::filesystem::path directions;  ///< empty = default_haze_line_directions()
};

struct NonLocalDehazeResult {
  Image radiance;      ///< CV_32FC3 on the 8-bit lattice (the reference writes uint8)
  Image transmission;  ///< CV_32FC1
  std::array<double, 3> airlight;
};

NonLocalDehazeResult dehaze_nonlocal(const Image& input, const NonLocalDehazeParams& params = {});

}  // namespace opforge
