#include "opforge/operators/grid_solver.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace opforge {
namespace {

GridWeights random_weights(int rows, int cols, unsigned seed, double scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.01, 1.0);
  GridWeights w{rows, cols, std::vector<double>(rows * cols), std::vector<double>(rows * cols)};
  for (auto& v : w.horizontal) v = scale * u(rng);
  for (auto& v : w.vertical) v = scale * u(rng);
  return w;
}

std::vector<double> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

double relative_residual(const GridWeights& w, const std::vector<double>& x, const std::vector<double>& b) {
  std::vector<double> ax(b.size());
  grid_multiply(w, x.data(), ax.data());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    num += (ax[i] - b[i]) * (ax[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

class GridSolverSizes : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(GridSolverSizes, CholmodSolvesToMachinePrecisionAndMatchesEigen) {
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 1, 50.0);
  const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 2);
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  GridCholesky(rows, cols).solve(w, {}, {&bp, 1}, {&xp, 1});
  EXPECT_LT(relative_residual(w, x, b), 1e-12);
  const auto eigen = reference::solve_grid_system(w, {}, b);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], eigen[i], 1e-9);
}

TEST_P(GridSolverSizes, CholmodHonoursADataTerm) {
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 3, 2.0);
  const auto data = random_vector(static_cast<std::size_t>(rows) * cols, 4);
  const auto b = random_vector(data.size(), 5);
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  GridCholesky(rows, cols).solve(w, data, {&bp, 1}, {&xp, 1});
  const auto eigen = reference::solve_grid_system(w, data, b);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], eigen[i], 1e-8);
}

TEST_P(GridSolverSizes, Mic0PreservesRowSums) {
  // michol: L·Lᵀ·1 = A·1, so the preconditioner maps A·1 back to 1.
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 6, 10.0);
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  std::vector<double> ones(n, 1.0), a1(n), z(n);
  grid_multiply(w, ones.data(), a1.data());
  Mic0Preconditioner(w).apply(a1.data(), z.data());
  for (double v : z) ASSERT_NEAR(v, 1.0, 1e-10);
}

TEST_P(GridSolverSizes, Mic0BandedSweepsAreBitIdenticalToThePlainOnes) {
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 9, 30.0);
  const auto r = random_vector(static_cast<std::size_t>(rows) * cols, 10);
  const Mic0Preconditioner m(w);
  std::vector<double> banded(r.size(), -1.0), plain(r.size(), -2.0);
  m.apply(r.data(), banded.data());
  m.apply_plain(r.data(), plain.data());
  for (std::size_t i = 0; i < r.size(); ++i) ASSERT_EQ(banded[i], plain[i]) << "pixel " << i;
}

TEST_P(GridSolverSizes, PcgReachesItsToleranceAndTheDirectSolution) {
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 7, 20.0);
  const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 8);
  const Mic0Preconditioner m(w);
  std::vector<double> loose(b.size()), tight(b.size());
  const PcgResult r = mic0_pcg_solve(w, m, b.data(), loose.data(), 0.1, 100);
  EXPECT_TRUE(r.converged);
  EXPECT_LE(r.relative_residual, 0.1);
  EXPECT_LE(relative_residual(w, loose, b), 0.1 * (1 + 1e-9));
  const PcgResult t = mic0_pcg_solve(w, m, b.data(), tight.data(), 1e-12, 1000);
  EXPECT_TRUE(t.converged);
  const auto exact = reference::solve_grid_system(w, {}, b);
  for (std::size_t i = 0; i < b.size(); ++i) ASSERT_NEAR(tight[i], exact[i], 1e-8);
}

INSTANTIATE_TEST_SUITE_P(Sizes, GridSolverSizes,
                         ::testing::Values(std::pair{1, 1}, std::pair{1, 7}, std::pair{6, 1}, std::pair{2, 2},
                                           std::pair{17, 23}, std::pair{64, 48}, std::pair{3, 517},
                                           std::pair{5, 4}, std::pair{6, 9}, std::pair{9, 3}));

TEST(GridSolver, NestedDissectionIsAPermutationOfThePixels) {
  for (const auto& [rows, cols] : {std::pair{1, 1}, std::pair{1, 40}, std::pair{37, 2}, std::pair{17, 23},
                                   std::pair{64, 48}, std::pair{375, 500}}) {
    const std::vector<int> order = grid_nested_dissection(rows, cols);
    std::vector<int> seen(static_cast<std::size_t>(rows) * cols, 0);
    ASSERT_EQ(order.size(), seen.size());
    for (int p : order) {
      ASSERT_GE(p, 0);
      ASSERT_LT(p, rows * cols);
      ++seen[p];
    }
    for (int c : seen) ASSERT_EQ(c, 1) << rows << "x" << cols;
  }
}

TEST(GridSolver, FactorFitsTheMemoryEstimate) {
  // The estimate assumes 12 bytes per factor entry on top of ~120 per pixel.
  for (const auto& [rows, cols] : {std::pair{64, 48}, std::pair{375, 500}, std::pair{512, 512}}) {
    const GridCholesky cholesky(rows, cols);
    EXPECT_LT(cholesky.factor_nonzeros() * 12.0, static_cast<double>(estimate_grid_cholesky_bytes(rows, cols)))
        << rows << "x" << cols;
  }
}

TEST(GridSolver, MemoryEstimateGrowsWithSize) {
  EXPECT_LT(estimate_grid_cholesky_bytes(256, 256), estimate_grid_cholesky_bytes(1024, 1024));
  EXPECT_GT(estimate_grid_cholesky_bytes(20000, 20000), std::size_t(100) << 30);  // > 100 GiB
}

}  // namespace
}  // namespace opforge
