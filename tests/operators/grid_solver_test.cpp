#include "opforge/operators/grid_solver.hpp"

#include <gtest/gtest.h>

#include <tbb/task_arena.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

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

TEST_P(GridSolverSizes, CholeskySolvesToMachinePrecisionAndMatchesEigen) {
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

TEST_P(GridSolverSizes, CholeskyHonoursADataTerm) {
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

TEST_P(GridSolverSizes, CholmodPeerMatchesEigen) {
  const auto [rows, cols] = GetParam();
  const GridWeights w = random_weights(rows, cols, 11, 50.0);
  const auto data = random_vector(static_cast<std::size_t>(rows) * cols, 12);
  const auto b = random_vector(data.size(), 13);
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  CholmodGridCholesky(rows, cols).solve(w, data, {&bp, 1}, {&xp, 1});
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
  // The factor is stored in float (each entry within 6e-8 relative), so the
  // identity holds to a few 1e-7 (measured ≤ 1.9e-7 over these sizes).
  for (double v : z) ASSERT_NEAR(v, 1.0, 1e-6);
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

// A WLS-like system: affinities spanning eight decades, as λ/(|∇ log g|^α + 1e-4) do.
GridWeights contrasted_weights(int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> decades(-3.0, 5.0);
  GridWeights w{rows, cols, std::vector<double>(rows * cols), std::vector<double>(rows * cols)};
  for (auto& v : w.horizontal) v = std::pow(10.0, decades(rng));
  for (auto& v : w.vertical) v = std::pow(10.0, decades(rng));
  return w;
}

TEST(GridSolver, CholeskyMatchesTheCholmodPeerOnAHighContrastSystem) {
  for (const auto& [rows, cols] : {std::pair{375, 500}, std::pair{130, 257}, std::pair{2, 3000}}) {
    const GridWeights w = contrasted_weights(rows, cols, 21);
    const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 22);
    std::vector<double> ours(b.size()), peer(b.size());
    const double* bp = b.data();
    double* op = ours.data();
    double* pp = peer.data();
    GridCholesky(rows, cols).solve(w, {}, {&bp, 1}, {&op, 1});
    CholmodGridCholesky(rows, cols).solve(w, {}, {&bp, 1}, {&pp, 1});
    double worst = 0;
    for (std::size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::abs(ours[i] - peer[i]));
    EXPECT_LT(worst, 1e-9) << rows << "x" << cols;
    // Affinities over eight decades: both stop at a few 1e-12.
    EXPECT_LT(relative_residual(w, ours, b), 1e-10) << rows << "x" << cols;
    EXPECT_LT(relative_residual(w, ours, b), 4 * relative_residual(w, peer, b) + 1e-15) << rows << "x" << cols;
  }
}

// x = A⁻¹b by `solve(b, x)`, run in an arena of `threads` threads.
template <class Solve>
std::vector<double> solved_on(int threads, const std::vector<double>& b, Solve&& solve) {
  std::vector<double> x(b.size());
  tbb::task_arena(threads).execute([&] { solve(b.data(), x.data()); });
  return x;
}

TEST(GridSolver, CholeskyIsIndependentOfTheThreadCount) {
  // 300x300 is large enough for the two halves of the top regions to be
  // factorised in parallel.
  const int rows = 300, cols = 300;
  const GridWeights w = contrasted_weights(rows, cols, 23);
  const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 24);
  const GridCholesky cholesky(rows, cols);
  const auto solve = [&](const double* bp, double* xp) { cholesky.solve(w, {}, {&bp, 1}, {&xp, 1}); };
  EXPECT_EQ(solved_on(1, b, solve), solved_on(2, b, solve));
}

TEST(GridSolver, CholeskySolvesSeveralRightHandSidesInPlaceAndConcurrently) {
  const int rows = 97, cols = 131;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const GridCholesky cholesky(rows, cols);
  std::vector<std::vector<double>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const GridWeights w = contrasted_weights(rows, cols, 30 + t);
      std::vector<double> b0 = random_vector(n, 40 + t), b1 = random_vector(n, 50 + t);
      const std::vector<double> rhs0 = b0, rhs1 = b1;
      double* out[] = {b0.data(), b1.data()};
      const double* in[] = {b0.data(), b1.data()};
      cholesky.solve(w, {}, in, out);
      const double residual = std::max(relative_residual(w, b0, rhs0), relative_residual(w, b1, rhs1));
      results[t] = {residual};
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_LT(r.at(0), 1e-10);
}

double rms_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

std::vector<double> double_solve(const GridCholesky& cholesky, const GridWeights& w, const std::vector<double>& b) {
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  cholesky.solve(w, {}, {&bp, 1}, {&xp, 1});
  return x;
}

std::vector<double> refined_solve(const GridCholesky& cholesky, const GridWeights& w, const std::vector<double>& b,
                                  const RefinementGoal& goal, RefinedSolveReport& report) {
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  report = cholesky.solve_refined(w, {}, {&bp, 1}, {&xp, 1}, goal);
  return x;
}

TEST(GridSolver, RefinedFloatSolveMeetsItsGoalAgainstTheDoubleSolve) {
  // Affinities over eight decades (up to 1e5, WLS at λ 10), and the same
  // times 100 (λ 1000, beyond WLS's range), where float pivots lose the
  // identity term and the solve must still get there (refined or in double).
  for (const double scale : {1.0, 100.0}) {
    for (const auto& [rows, cols] : {std::pair{375, 500}, std::pair{130, 257}, std::pair{2, 3000}}) {
      GridWeights w = contrasted_weights(rows, cols, 27);
      for (auto& v : w.horizontal) v *= scale;
      for (auto& v : w.vertical) v *= scale;
      const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 28);
      const GridCholesky cholesky(rows, cols);
      const std::vector<double> exact = double_solve(cholesky, w, b);
      const RefinementGoal goal;  // RMS residual ≤ 1e-6
      RefinedSolveReport report;
      const std::vector<double> refined = refined_solve(cholesky, w, b, goal, report);
      EXPECT_LE(report.residual_rms, goal.residual_rms) << rows << "x" << cols << " x" << scale;
      // D = I: the error is at most the residual.
      EXPECT_LE(rms_difference(refined, exact), goal.residual_rms) << rows << "x" << cols << " x" << scale;
      if (scale == 1.0) {
        EXPECT_FALSE(report.refactored_in_double) << rows << "x" << cols;
        EXPECT_LE(report.refinements, 2) << rows << "x" << cols;
      }
    }
  }
}

TEST(GridSolver, RefinedSolveFallsBackToADoubleFactorWhenItsGoalIsOutOfReach) {
  const int rows = 60, cols = 70;
  const GridWeights w = contrasted_weights(rows, cols, 29);
  const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 30);
  const GridCholesky cholesky(rows, cols);
  RefinedSolveReport report;
  const std::vector<double> refined =
      refined_solve(cholesky, w, b, {.residual_rms = 1e-30, .max_refinements = 1}, report);
  EXPECT_TRUE(report.refactored_in_double);
  EXPECT_EQ(refined, double_solve(cholesky, w, b));
  EXPECT_THROW(refined_solve(cholesky, w, b, {.residual_rms = 0.0}, report), std::invalid_argument);
}

TEST(GridSolver, RefinedSolveIsIndependentOfTheThreadCountAndSolvesInPlace) {
  const int rows = 300, cols = 300;
  const GridWeights w = contrasted_weights(rows, cols, 31);
  const auto b = random_vector(static_cast<std::size_t>(rows) * cols, 32);
  const GridCholesky cholesky(rows, cols);
  // MXCSR's control bits (its low six are sticky exception flags).
  const auto mode = [] { return _mm_getcsr() & ~0x3Fu; };
  const unsigned mode_before = mode();
  const auto solve = [&](const double* bp, double* xp) { cholesky.solve_refined(w, {}, {&bp, 1}, {&xp, 1}); };
  const auto one = solved_on(1, b, solve);
  EXPECT_EQ(one, solved_on(2, b, solve));
  // Flush-to-zero is on only while the float factor is made.
  EXPECT_EQ(mode(), mode_before);
  std::vector<double> in_place = b;
  const double* ip = in_place.data();
  double* op = in_place.data();
  tbb::task_arena(1).execute([&] { cholesky.solve_refined(w, {}, {&ip, 1}, {&op, 1}); });
  EXPECT_EQ(in_place, one);
}

TEST(GridSolver, CholeskyRefusesASystemThatIsNotPositiveDefinite) {
  const int rows = 40, cols = 30;
  const GridWeights w = random_weights(rows, cols, 25, 1.0);
  std::vector<double> data(static_cast<std::size_t>(rows) * cols, 1.0);
  data[617] = -100.0;
  const auto b = random_vector(data.size(), 26);
  std::vector<double> x(b.size());
  const double* bp = b.data();
  double* xp = x.data();
  EXPECT_THROW(GridCholesky(rows, cols).solve(w, data, {&bp, 1}, {&xp, 1}), std::runtime_error);
}

TEST(GridSolver, FactorFitsTheMemoryEstimate) {
  // The estimate covers the numeric factor (8 bytes per stored entry) with
  // room for the update matrices in flight and ~120 bytes a pixel.
  for (const auto& [rows, cols] : {std::pair{64, 48}, std::pair{375, 500}, std::pair{512, 512}, std::pair{3, 4000}}) {
    const GridCholesky cholesky(rows, cols);
    EXPECT_LT(static_cast<double>(cholesky.factor_entries()) * 8.0 * 1.25,
              static_cast<double>(estimate_grid_cholesky_bytes(rows, cols)))
        << rows << "x" << cols;
    EXPECT_LE(cholesky.factor_nonzeros(), static_cast<double>(cholesky.factor_entries()));
  }
}

TEST(GridSolver, MemoryEstimateGrowsWithSize) {
  EXPECT_LT(estimate_grid_cholesky_bytes(256, 256), estimate_grid_cholesky_bytes(1024, 1024));
  EXPECT_GT(estimate_grid_cholesky_bytes(20000, 20000), std::size_t(100) << 30);  // > 100 GiB
}

}  // namespace
}  // namespace opforge
