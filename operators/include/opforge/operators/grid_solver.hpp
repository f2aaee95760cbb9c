#pragma once
// Sparse linear systems on the pixel grid, shared by the edge-aware smoothers
// (wls_smooth, rtv_smooth, and the regularisation of dehaze_nonlocal):
//
//     (D + L_a) u = b
//
// where L_a is the weighted graph Laplacian of the 4-connected rows×cols grid
// ((L_a u)_p = Σ_{q ∈ N4(p)} a_pq (u_p − u_q)) and D = diag(data) (the
// identity when no data term is given). The matrix is symmetric positive
// definite whenever D > 0. Its diagonal is data + (((E + W) + S) + N), summed in
// the order the authors' MATLAB code builds it (`1 − (e + w + s + n)`).
//
// Four solvers:
//  - GridCholesky: a multifrontal Cholesky factorisation along the grid's
//    geometric nested dissection, written for this matrix: the fronts follow
//    from the geometry, the dense work goes to BLAS/LAPACK and the two halves
//    of large regions factorise in parallel. The analysis depends only on
//    the grid size and is done once; numeric storage is reused. Thread-safe:
//    solve() may run concurrently (one per channel).
//  - CholmodGridCholesky: CHOLMOD's supernodal Cholesky with the same
//    ordering, kept as the peer GridCholesky is tested and timed against.
//  - mic0_pcg_solve: the authors' MATLAB branch of RTV — MIC(0) preconditioner
//    + preconditioned CG to a loose relative residual.
//  - reference::solve_grid_system: Eigen's SimplicialLDLT, the plain path the
//    tests hold the others against.

#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace opforge {

/// Positive edge weights of a rows×cols grid, row-major (index y·cols + x).
/// horizontal[p] couples (y,x)–(y,x+1) (ignored in the last column);
/// vertical[p] couples (y,x)–(y+1,x) (ignored in the last row).
struct GridWeights {
  int rows = 0, cols = 0;
  std::vector<double> horizontal, vertical;
};

/// The diagonal of D + L_a at (y, x): data + (((E + W) + S) + N), missing
/// edges 0 (data empty = 1).
double grid_diagonal(const GridWeights& weights, std::span<const double> data, int y, int x);

/// Throws std::invalid_argument unless the weights (and data, when given)
/// hold rows·cols values each.
void check_grid_weights(const GridWeights& weights, std::span<const double> data);

/// A nested-dissection elimination order of the rows×cols grid (pixel
/// indices y·cols + x, each once): GridCholesky's fill-reducing ordering.
std::vector<int> grid_nested_dissection(int rows, int cols);

/// An estimate of the peak bytes a GridCholesky solve of a rows×cols grid
/// needs (factor, update matrices, planes), used to refuse
/// an impossible size up front instead of being killed for memory.
std::size_t estimate_grid_cholesky_bytes(int rows, int cols);

/// Throws opforge::Error (core require_memory) naming `who` and the grid's
/// size when the solve's estimated bytes exceed what this process may allocate.
void require_solver_memory(const std::string& who, int rows, int cols, std::size_t needed_bytes);

/// What GridCholesky::solve_refined aims for: each solution x of A x = b
/// refined until the root mean square of its residual b − A x is at most
/// `residual_rms`. Where D ≥ I (WLS's identity data term) the smallest
/// eigenvalue of A is at least 1, so ‖x − A⁻¹b‖₂ ≤ ‖b − A x‖₂: the RMS error
/// of x is then at most `residual_rms` too (1e-6: ≥ 120 dB below a peak of 1).
struct RefinementGoal {
  double residual_rms = 1e-6;
  int max_refinements = 4;  ///< then the system is factorised again in double
};

struct RefinedSolveReport {
  int refinements = 0;                ///< most refinement steps any right-hand side took
  bool refactored_in_double = false;  ///< some right-hand side missed the goal and was solved in double
  double residual_rms = 0;            ///< largest final residual RMS of those that met the goal
};

class GridCholesky {
 public:
  GridCholesky(int rows, int cols);
  ~GridCholesky();
  GridCholesky(const GridCholesky&) = delete;
  GridCholesky& operator=(const GridCholesky&) = delete;

  /// Factorises D + L_a for `weights` (and `data`, rows·cols values; empty =
  /// identity) and solves for each right-hand side: out[i] = A⁻¹ rhs[i]
  /// (out[i] may be rhs[i]). Throws std::runtime_error when the system is not
  /// positive definite, std::bad_alloc when the factor does not fit.
  void solve(const GridWeights& weights, std::span<const double> data, std::span<const double* const> rhs,
             std::span<double* const> out) const;

  /// The same systems with a float factor: half the memory traffic and
  /// twice the SIMD width of solve() (one 500x375 WLS channel ~1.4x faster),
  /// each solution refined in double (residual in double, correction
  /// through the float factor) to `goal`. A solution that misses it after
  /// goal.max_refinements steps is solved again with a double factor.
  /// Results do not depend on the thread count.
  RefinedSolveReport solve_refined(const GridWeights& weights, std::span<const double> data,
                                   std::span<const double* const> rhs, std::span<double* const> out,
                                   const RefinementGoal& goal = {}) const;

  /// Non-zeros of the Cholesky factor (the lower triangle).
  double factor_nonzeros() const;
  /// Doubles one numeric factor occupies (its panels store each separator's
  /// triangle in full).
  std::size_t factor_entries() const { return factor_entries_; }

 private:
  struct Node;
  struct Numeric;
  struct UpdateMatrix;
  struct Coefficients {
    const double* diagonal;
    const double* horizontal;
    const double* vertical;
  };
  static constexpr std::size_t kKeepNumeric = 4;  // idle numeric factors kept for reuse

  // Factorises the subtree of node `id`; forward-solves each vector in
  // `forward` along the way (L y' = y on the subtree's separator pixels).
  template <class T>
  UpdateMatrix factor_node(int id, const Coefficients& a, Numeric& numeric, std::span<T* const> forward) const;
  template <class T>
  void solve_in_place(const T* storage, T* y) const;
  template <class T>
  void backward_in_place(const T* storage, T* y) const;
  void check_system(const GridWeights& weights, std::span<const double> data, std::size_t rhs_count,
                    std::size_t out_count) const;
  void solve_in_double(const GridWeights& weights, const std::vector<double>& diagonal,
                       std::span<const double* const> rhs, std::span<double* const> out) const;
  std::unique_ptr<Numeric> acquire() const;
  void release(std::unique_ptr<Numeric> numeric) const;

  int rows_, cols_;
  std::vector<Node> nodes_;  // the dissection tree in post-order; the root last
  std::size_t factor_entries_ = 0;
  mutable std::mutex idle_mutex_;
  mutable std::vector<std::unique_ptr<Numeric>> idle_;
};

class CholmodGridCholesky {
 public:
  CholmodGridCholesky(int rows, int cols);
  ~CholmodGridCholesky();
  CholmodGridCholesky(const CholmodGridCholesky&) = delete;
  CholmodGridCholesky& operator=(const CholmodGridCholesky&) = delete;

  /// Factorises D + L_a for `weights` (and `data`, rows·cols values; empty =
  /// identity) and solves for each right-hand side: out[i] = A⁻¹ rhs[i].
  void solve(const GridWeights& weights, std::span<const double> data, std::span<const double* const> rhs,
             std::span<double* const> out) const;

  /// Non-zeros of the Cholesky factor chosen by the analysis.
  double factor_nonzeros() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// A shared GridCholesky for this grid size; the most recent few sizes stay
/// analysed (with their numeric factors kept for reuse), so a dataset of
/// equal-sized images analyses once.
std::shared_ptr<const GridCholesky> cached_grid_cholesky(int rows, int cols);

struct PcgResult {
  int iterations = 0;
  double relative_residual = 0;  ///< ‖r‖/‖b‖ of the returned iterate (recursive residual)
  bool converged = false;
};

/// The modified incomplete Cholesky factor (zero fill, natural order) of
/// I + L_a: the pattern of tril(A); each product that would fill outside it
/// is dropped and subtracted from the diagonals of both rows it couples, so
/// L·Lᵀ·1 = A·1 (MATLAB `ichol(A, struct('michol','on'))`).
class Mic0Preconditioner {
 public:
  explicit Mic0Preconditioner(const GridWeights& weights);
  /// z = (L·Lᵀ)⁻¹ r: the two triangular sweeps, run over bands of rows so
  /// that several dependency chains are in flight; bit-identical to
  /// apply_plain.
  void apply(const double* r, double* z) const;
  /// The same sweeps pixel by pixel in index order (the reference).
  void apply_plain(const double* r, double* z) const;

 private:
  int rows_, cols_;
  std::vector<float> inverse_diag_;  // 1/L(p,p): the sweeps multiply (a division's latency bound them)
  std::vector<float> east_, south_;  // L(p+1,p), L(p+cols,p)
};

/// y = (D + L_a) x, D = diag(data) (empty: the identity); rows in parallel.
void grid_multiply(const GridWeights& weights, std::span<const double> data, const double* x, double* y);
/// y = (I + L_a) x.
void grid_multiply(const GridWeights& weights, const double* x, double* y);

/// Preconditioned CG on (I + L_a) x = b from x₀ = 0, as MATLAB's
/// pcg(A, b, tol, maxit, L, L'): stops at the first iterate whose recursively
/// updated residual satisfies ‖r‖ ≤ tol·‖b‖ and returns it. Sequential and
/// deterministic.
PcgResult mic0_pcg_solve(const GridWeights& weights, const Mic0Preconditioner& preconditioner, const double* b,
                         double* x, double tolerance, int max_iterations);

namespace reference {
/// Eigen SimplicialLDLT on the same system (one right-hand side).
std::vector<double> solve_grid_system(const GridWeights& weights, std::span<const double> data,
                                      std::span<const double> rhs);
}  // namespace reference

}  // namespace opforge
