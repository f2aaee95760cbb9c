#include "opforge/operators/grid_solver.hpp"

#include <cholmod.h>
#include <dlfcn.h>
#include <omp.h>

#include <Eigen/Sparse>
#include <Eigen/SparseCholesky>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "blas.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace opforge {

// CHOLMOD's and GridCholesky's dense kernels go to the system BLAS. opforge
// installs Debian's OpenBLAS (pthread flavour: the serial flavour is not safe
// to call from two threads at once) and keeps it to one thread per call.
// OpenBLAS also starts a pool of worker threads when it is loaded, and they
// spin for ~10^8 cycles waiting for work that never comes: in a short
// `opforge apply` that took a core from the operator (1 MP local_laplacian
// 167 -> 125 ms on 2 cores). One thread per call needs no pool, so it is shut
// down (OpenBLAS starts it again by itself if a caller asks for more threads).
void single_threaded_blas() {
  static const bool done = [] {
    using SetThreads = void (*)(int);
    using Shutdown = int (*)();
    if (auto* set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
    if (auto* stop = reinterpret_cast<Shutdown>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"))) stop();
    return true;
  }();
  (void)done;
}

namespace {
// At program start, not at the first solve: the pool spins from the moment
// the library is loaded.
const bool blas_single_threaded_at_start = (single_threaded_blas(), true);
}  // namespace

double grid_diagonal(const GridWeights& w, std::span<const double> data, int y, int x) {
  const std::size_t p = static_cast<std::size_t>(y) * w.cols + x;
  const double e = x + 1 < w.cols ? w.horizontal[p] : 0.0;
  const double west = x > 0 ? w.horizontal[p - 1] : 0.0;
  const double s = y + 1 < w.rows ? w.vertical[p] : 0.0;
  const double n = y > 0 ? w.vertical[p - w.cols] : 0.0;
  return (data.empty() ? 1.0 : data[p]) + (((e + west) + s) + n);
}

void check_grid_weights(const GridWeights& w, std::span<const double> data) {
  const std::size_t n = static_cast<std::size_t>(w.rows) * w.cols;
  if (w.rows < 1 || w.cols < 1 || w.horizontal.size() != n || w.vertical.size() != n ||
      (!data.empty() && data.size() != n)) {
    throw std::invalid_argument("grid solver: weights or data do not match the grid size");
  }
}

namespace {


// The lower triangle of D + L_a in CHOLMOD's compressed-column form, numbered
// row-major (p = y·cols + x): column p holds p, then its east and south
// neighbours.
cholmod_sparse* lower_matrix(const GridWeights& w, std::span<const double> data, cholmod_common* c) {
  const int rows = w.rows, cols = w.cols;
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  const std::size_t nnz = n + static_cast<std::size_t>(rows) * (cols - 1) + static_cast<std::size_t>(rows - 1) * cols;
  cholmod_sparse* a = cholmod_allocate_sparse(n, n, nnz, /*sorted=*/1, /*packed=*/1, /*stype=*/-1, CHOLMOD_REAL, c);
  if (!a) throw std::bad_alloc();
  auto* ap = static_cast<int*>(a->p);
  auto* ai = static_cast<int*>(a->i);
  auto* ax = static_cast<double*>(a->x);
  std::size_t k = 0;
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const std::size_t p = static_cast<std::size_t>(y) * cols + x;
      ap[p] = static_cast<int>(k);
      ai[k] = static_cast<int>(p);
      ax[k++] = grid_diagonal(w, data, y, x);
      if (x + 1 < cols) {
        ai[k] = static_cast<int>(p + 1);
        ax[k++] = -w.horizontal[p];
      }
      if (y + 1 < rows) {
        ai[k] = static_cast<int>(p + cols);
        ax[k++] = -w.vertical[p];
      }
    }
  }
  ap[n] = static_cast<int>(k);
  return a;
}

void start_common(cholmod_common* c) {
  single_threaded_blas();
  // Debian's CHOLMOD runs parts of its supernodal factorisation in OpenMP
  // teams of a compiled-in 4 threads. Our parallelism is TBB's (channels,
  // rows); nested OpenMP teams inside TBB workers oversubscribe the cores
  // and spin. Make OpenMP regions started from this thread run on it alone.
  omp_set_max_active_levels(0);
  cholmod_start(c);
  c->supernodal = CHOLMOD_SUPERNODAL;
  c->print = 0;
  c->error_handler = nullptr;  // we check Common->status ourselves
}

}  // namespace

std::size_t estimate_grid_cholesky_bytes(int rows, int cols) {
  // Nested-dissection fill on an n-node 2-D grid grows as n·log2(n). At
  // 1024² GridCholesky's factor is 6.6e7 doubles (nnz(L) 5.8e7; CHOLMOD's
  // 5.3e7), 26·n·log2(n) bytes, under the 2.6·12 = 31·n·log2(n) assumed
  // here, which leaves room for the update matrices in flight (a test holds
  // the factor 25 % under it). The planes, right-hand sides and solution add
  // ~120 bytes a pixel.
  const double n = static_cast<double>(rows) * cols;
  const double factor = 2.6 * n * std::log2(std::max(n, 2.0)) * 12.0;
  return static_cast<std::size_t>(factor + 120.0 * n);
}

void require_solver_memory(const std::string& who, int rows, int cols, std::size_t needed_bytes) {
  require_memory(who, "the sparse solve of a " + std::to_string(cols) + "x" + std::to_string(rows) + " image",
                 static_cast<double>(needed_bytes));
}

struct CholmodGridCholesky::State {
  int rows = 0, cols = 0;
  cholmod_common common;
  cholmod_factor* symbolic = nullptr;
  // Numeric factors not in use. Refactorising an existing factor reuses its
  // memory: a fresh one costs hundreds of MB of page faults at 1 MP, more
  // than the factorisation itself on a virtual machine.
  std::mutex idle_mutex;
  std::vector<cholmod_factor*> idle;

  cholmod_factor* acquire(cholmod_common* c) {
    {
      std::lock_guard lock(idle_mutex);
      if (!idle.empty()) {
        cholmod_factor* l = idle.back();
        idle.pop_back();
        return l;
      }
    }
    cholmod_factor* l = cholmod_copy_factor(symbolic, c);
    if (!l) throw std::bad_alloc();
    return l;
  }
  void release(cholmod_factor* l) {
    std::lock_guard lock(idle_mutex);
    idle.push_back(l);
  }
};

CholmodGridCholesky::CholmodGridCholesky(int rows, int cols) : state_(std::make_unique<State>()) {
  state_->rows = rows;
  state_->cols = cols;
  start_common(&state_->common);
  // The analysis only looks at the pattern; unit weights give the same one.
  GridWeights unit{rows, cols, std::vector<double>(static_cast<std::size_t>(rows) * cols, 1.0),
                   std::vector<double>(static_cast<std::size_t>(rows) * cols, 1.0)};
  cholmod_sparse* a = lower_matrix(unit, {}, &state_->common);
  std::vector<int> order = grid_nested_dissection(rows, cols);
  state_->common.nmethods = 1;
  state_->common.method[0].ordering = CHOLMOD_GIVEN;
  state_->symbolic = cholmod_analyze_p(a, order.data(), nullptr, 0, &state_->common);
  cholmod_free_sparse(&a, &state_->common);
  if (!state_->symbolic || state_->common.status < CHOLMOD_OK) {
    const int status = state_->common.status;
    cholmod_finish(&state_->common);
    if (status == CHOLMOD_OUT_OF_MEMORY) throw std::bad_alloc();
    throw std::runtime_error("CHOLMOD analysis failed (status " + std::to_string(status) + ")");
  }
}

CholmodGridCholesky::~CholmodGridCholesky() {
  for (cholmod_factor*& l : state_->idle) cholmod_free_factor(&l, &state_->common);
  cholmod_free_factor(&state_->symbolic, &state_->common);
  cholmod_finish(&state_->common);
}

double CholmodGridCholesky::factor_nonzeros() const { return state_->common.lnz; }

void CholmodGridCholesky::solve(const GridWeights& weights, std::span<const double> data, std::span<const double* const> rhs,
                         std::span<double* const> out) const {
  check_grid_weights(weights, data);
  if (weights.rows != state_->rows || weights.cols != state_->cols || rhs.size() != out.size()) {
    throw std::invalid_argument("CholmodGridCholesky::solve: size mismatch");
  }
  const std::size_t n = static_cast<std::size_t>(weights.rows) * weights.cols;
  cholmod_common c;
  start_common(&c);
  cholmod_sparse* a = nullptr;
  cholmod_factor* l = nullptr;
  cholmod_dense* b = nullptr;
  cholmod_dense* x = nullptr;
  const auto cleanup = [&](bool keep_factor) {
    cholmod_free_dense(&x, &c);
    cholmod_free_dense(&b, &c);
    if (l && keep_factor) {
      state_->release(l);
    } else {
      cholmod_free_factor(&l, &c);
    }
    cholmod_free_sparse(&a, &c);
    cholmod_finish(&c);
  };
  try {
    a = lower_matrix(weights, data, &c);
    l = state_->acquire(&c);
    cholmod_factorize(a, l, &c);
    if (c.status == CHOLMOD_NOT_POSDEF) throw std::runtime_error("grid system is not positive definite");
    if (c.status == CHOLMOD_OUT_OF_MEMORY) throw std::bad_alloc();
    b = cholmod_allocate_dense(n, rhs.size(), n, CHOLMOD_REAL, &c);
    if (!b) throw std::bad_alloc();
    for (std::size_t j = 0; j < rhs.size(); ++j) {
      std::copy(rhs[j], rhs[j] + n, static_cast<double*>(b->x) + j * n);
    }
    x = cholmod_solve(CHOLMOD_A, l, b, &c);
    if (!x) throw std::bad_alloc();
    for (std::size_t j = 0; j < out.size(); ++j) {
      const double* col = static_cast<const double*>(x->x) + j * n;
      std::copy(col, col + n, out[j]);
    }
  } catch (...) {
    cleanup(false);
    throw;
  }
  cleanup(true);
}

std::shared_ptr<const GridCholesky> cached_grid_cholesky(int rows, int cols) {
  constexpr std::size_t kKeep = 2;  // each size keeps its numeric factors
  static std::mutex mutex;
  static std::vector<std::pair<std::pair<int, int>, std::shared_ptr<const GridCholesky>>> recent;
  std::lock_guard lock(mutex);
  for (std::size_t i = 0; i < recent.size(); ++i) {
    if (recent[i].first == std::pair{rows, cols}) {
      auto hit = recent[i];
      recent.erase(recent.begin() + static_cast<std::ptrdiff_t>(i));
      recent.push_back(hit);
      return hit.second;
    }
  }
  auto made = std::make_shared<const GridCholesky>(rows, cols);
  if (recent.size() == kKeep) recent.erase(recent.begin());
  recent.emplace_back(std::pair{rows, cols}, made);
  return made;
}

void grid_multiply(const GridWeights& w, const double* x, double* y) {
  const int rows = w.rows, cols = w.cols;
  const double* h = w.horizontal.data();
  const double* v = w.vertical.data();
  // One pixel with every neighbour test; away from the first and last rows and
  // columns every pixel has all four neighbours, so the interior loop has no
  // branches (and the same expression).
  const auto pixel = [&](int r, int c) {
    const std::size_t p = static_cast<std::size_t>(r) * cols + c;
    double s = grid_diagonal(w, {}, r, c) * x[p];
    if (c + 1 < cols) s -= h[p] * x[p + 1];
    if (c > 0) s -= h[p - 1] * x[p - 1];
    if (r + 1 < rows) s -= v[p] * x[p + cols];
    if (r > 0) s -= v[p - cols] * x[p - cols];
    y[p] = s;
  };
  for (int r = 0; r < rows; ++r) {
    if (r == 0 || r + 1 == rows || cols < 3) {
      for (int c = 0; c < cols; ++c) pixel(r, c);
      continue;
    }
    pixel(r, 0);
    const std::size_t row = static_cast<std::size_t>(r) * cols;
    for (std::size_t p = row + 1; p + 1 < row + cols; ++p) {
      const double diagonal = 1.0 + (((h[p] + h[p - 1]) + v[p]) + v[p - cols]);
      double s = diagonal * x[p];
      s -= h[p] * x[p + 1];
      s -= h[p - 1] * x[p - 1];
      s -= v[p] * x[p + cols];
      s -= v[p - cols] * x[p - cols];
      y[p] = s;
    }
    pixel(r, cols - 1);
  }
}

Mic0Preconditioner::Mic0Preconditioner(const GridWeights& w)
    : rows_(w.rows),
      cols_(w.cols),
      diag_(static_cast<std::size_t>(w.rows) * w.cols),
      east_(diag_.size()),
      south_(diag_.size()) {
  check_grid_weights(w, {});
  for (int y = 0; y < rows_; ++y) {
    for (int x = 0; x < cols_; ++x) {
      const std::size_t p = static_cast<std::size_t>(y) * cols_ + x;
      double d = grid_diagonal(w, {}, y, x);
      // Column p−1 (west): its east entry is L(p, p−1); the dropped fill
      // L(p,p−1)·L(p−1+cols,p−1) is taken from this diagonal (and from the
      // diagonal of p−1+cols, below).
      if (x > 0) {
        const std::size_t k = p - 1;
        d -= east_[k] * east_[k];
        if (y + 1 < rows_) d -= east_[k] * south_[k];
      }
      // Column p−cols (north): its south entry is L(p, p−cols); its dropped
      // fill couples its east neighbour and p.
      if (y > 0) {
        const std::size_t k = p - cols_;
        d -= south_[k] * south_[k];
        if (x + 1 < cols_) d -= east_[k] * south_[k];
      }
      if (!(d > 0)) throw std::runtime_error("MIC(0) breakdown: non-positive pivot");
      diag_[p] = std::sqrt(d);
      east_[p] = x + 1 < cols_ ? -w.horizontal[p] / diag_[p] : 0.0;
      south_[p] = y + 1 < rows_ ? -w.vertical[p] / diag_[p] : 0.0;
    }
  }
}

void Mic0Preconditioner::apply_plain(const double* r, double* z) const {
  const std::size_t n = diag_.size();
  const std::size_t cols = static_cast<std::size_t>(cols_);
  // Forward: L t = r (column-oriented: t_p final, then push to east/south).
  // Row-oriented form: t_p = (r_p − L(p,p−1)·t_{p−1} − L(p,p−cols)·t_{p−cols}) / L(p,p).
  for (std::size_t p = 0; p < n; ++p) {
    double v = r[p];
    if (p % cols != 0) v -= east_[p - 1] * z[p - 1];
    if (p >= cols) v -= south_[p - cols] * z[p - cols];
    z[p] = v / diag_[p];
  }
  // Backward: Lᵀ z = t.
  for (std::size_t p = n; p-- > 0;) {
    double v = z[p];
    if ((p + 1) % cols != 0) v -= east_[p] * z[p + 1];
    if (p + cols < n) v -= south_[p] * z[p + cols];
    z[p] = v / diag_[p];
  }
}

namespace {

// The triangular sweeps of Mic0Preconditioner::apply, skewed over bands of
// kBand rows. Pixel (y, x) of a forward sweep needs (y, x−1) and (y−1, x), so
// row y+j of a band can run at column t−j while row y runs at column t: the
// band carries kBand independent dependency chains (one chain is bound by the
// latency of a multiply, a subtraction and a division per pixel). Row j of a
// band lags kSkew columns behind row j−1 rather than one: with a row length
// of a multiple of 512 doubles (a 1024-pixel image), a lag of one column puts
// a row's loads 4 KiB apart from the previous row's stores, and the false
// store-to-load dependencies made the bands slower than the plain sweep.
// Each pixel is computed by the same expression as the plain sweep, so the
// results are bit-identical to it.
constexpr std::size_t kBand = 4;
constexpr std::size_t kSkew = 9;

struct Mic0Sweeps {
  const double* diag;
  const double* east;
  const double* south;
  std::size_t cols;

  // Forward pixel (row y, column x) with y ≥ 1: west term when x > 0.
  void forward(const double* r, double* z, std::size_t y, std::size_t x) const {
    const std::size_t p = y * cols + x;
    double v = r[p];
    if (x > 0) v -= east[p - 1] * z[p - 1];
    v -= south[p - cols] * z[p - cols];
    z[p] = v / diag[p];
  }
  // Backward pixel with y < rows − 1: east term when x < cols − 1.
  void backward(double* z, std::size_t y, std::size_t x) const {
    const std::size_t p = y * cols + x;
    double v = z[p];
    if (x + 1 < cols) v -= east[p] * z[p + 1];
    v -= south[p] * z[p + cols];
    z[p] = v / diag[p];
  }

  // Rows first..first+band−1 (all ≥ 1), row first+j at column t − j·kSkew.
  void forward_band(const double* r, double* z, std::size_t first, int band) const {
    const std::size_t steps = cols + static_cast<std::size_t>(band - 1) * kSkew;
    for (std::size_t t = 0; t < steps; ++t) {
      if (band == kBand && t > (kBand - 1) * kSkew && t < cols) {
        // Every row of the band is inside the image and past column 0.
        for (std::size_t j = 0; j < kBand; ++j) {
          const std::size_t p = (first + j) * cols + (t - j * kSkew);
          double v = r[p];
          v -= east[p - 1] * z[p - 1];
          v -= south[p - cols] * z[p - cols];
          z[p] = v / diag[p];
        }
        continue;
      }
      for (std::size_t j = 0; j < static_cast<std::size_t>(band); ++j) {
        if (t >= j * kSkew && t - j * kSkew < cols) forward(r, z, first + j, t - j * kSkew);
      }
    }
  }
  // Rows last, last−1, …, last−band+1 (all < rows − 1), row last−j at
  // column cols − 1 − (t − j·kSkew).
  void backward_band(double* z, std::size_t last, int band) const {
    const std::size_t steps = cols + static_cast<std::size_t>(band - 1) * kSkew;
    for (std::size_t t = 0; t < steps; ++t) {
      if (band == kBand && t > (kBand - 1) * kSkew && t < cols) {
        for (std::size_t j = 0; j < kBand; ++j) {
          const std::size_t p = (last - j) * cols + (cols - 1 - (t - j * kSkew));
          double v = z[p];
          v -= east[p] * z[p + 1];
          v -= south[p] * z[p + cols];
          z[p] = v / diag[p];
        }
        continue;
      }
      for (std::size_t j = 0; j < static_cast<std::size_t>(band); ++j) {
        if (t >= j * kSkew && t - j * kSkew < cols) backward(z, last - j, cols - 1 - (t - j * kSkew));
      }
    }
  }
};

}  // namespace

void Mic0Preconditioner::apply(const double* r, double* z) const {
  const std::size_t rows = static_cast<std::size_t>(rows_), cols = static_cast<std::size_t>(cols_);
  const Mic0Sweeps s{diag_.data(), east_.data(), south_.data(), cols};
  // Forward: the first row has no north neighbour, then bands of rows.
  for (std::size_t x = 0; x < cols; ++x) {
    double v = r[x];
    if (x > 0) v -= east_[x - 1] * z[x - 1];
    z[x] = v / diag_[x];
  }
  for (std::size_t y = 1; y < rows; y += kBand) {
    s.forward_band(r, z, y, static_cast<int>(std::min(kBand, rows - y)));
  }
  // Backward: the last row has no south neighbour, then bands upwards.
  const std::size_t last = rows - 1;
  for (std::size_t x = cols; x-- > 0;) {
    const std::size_t p = last * cols + x;
    double v = z[p];
    if (x + 1 < cols) v -= east_[p] * z[p + 1];
    z[p] = v / diag_[p];
  }
  for (std::size_t done = 1; done < rows; done += kBand) {
    s.backward_band(z, last - done, static_cast<int>(std::min(kBand, rows - done)));
  }
}

PcgResult mic0_pcg_solve(const GridWeights& w, const Mic0Preconditioner& m, const double* b, double* x,
                         double tolerance, int max_iterations) {
  const std::size_t n = static_cast<std::size_t>(w.rows) * w.cols;
  // Four interleaved partial sums: a fixed order (the result does not depend
  // on threads), and four additions in flight instead of one chain.
  const auto dot = [n](const double* u, const double* v) {
    double s[4] = {0, 0, 0, 0};
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      for (std::size_t k = 0; k < 4; ++k) s[k] += u[i + k] * v[i + k];
    }
    for (; i < n; ++i) s[0] += u[i] * v[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
  };
  std::fill(x, x + n, 0.0);
  const double norm_b = std::sqrt(dot(b, b));
  PcgResult result;
  if (norm_b == 0) {
    result.converged = true;
    return result;
  }
  const double target = tolerance * norm_b;
  std::vector<double> r(b, b + n), z(n), p(n), q(n), best;
  double rho_previous = 0, best_norm = norm_b;
  for (int it = 1; it <= max_iterations; ++it) {
    m.apply(r.data(), z.data());
    const double rho = dot(r.data(), z.data());
    if (it == 1) {
      p = z;
    } else {
      const double beta = rho / rho_previous;
      for (std::size_t i = 0; i < n; ++i) p[i] = z[i] + beta * p[i];
    }
    grid_multiply(w, p.data(), q.data());
    const double alpha = rho / dot(p.data(), q.data());
    for (std::size_t i = 0; i < n; ++i) {
      x[i] += alpha * p[i];
      r[i] -= alpha * q[i];
    }
    const double norm_r = std::sqrt(dot(r.data(), r.data()));
    result.iterations = it;
    result.relative_residual = norm_r / norm_b;
    if (norm_r <= target) {
      result.converged = true;
      return result;
    }
    if (norm_r < best_norm) {  // MATLAB returns the best iterate when it does not converge
      best_norm = norm_r;
      best.assign(x, x + n);
    }
    rho_previous = rho;
  }
  if (!best.empty()) std::copy(best.begin(), best.end(), x);
  result.relative_residual = best_norm / norm_b;
  return result;
}

namespace reference {

std::vector<double> solve_grid_system(const GridWeights& w, std::span<const double> data,
                                      std::span<const double> rhs) {
  check_grid_weights(w, data);
  const int rows = w.rows, cols = w.cols;
  const auto n = static_cast<Eigen::Index>(rows) * cols;
  std::vector<Eigen::Triplet<double>> entries;
  entries.reserve(static_cast<std::size_t>(n) * 3);
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      const Eigen::Index p = static_cast<Eigen::Index>(y) * cols + x;
      entries.emplace_back(p, p, grid_diagonal(w, data, y, x));
      if (x + 1 < cols) entries.emplace_back(p + 1, p, -w.horizontal[p]);
      if (y + 1 < rows) entries.emplace_back(p + cols, p, -w.vertical[p]);
    }
  }
  Eigen::SparseMatrix<double> a(n, n);
  a.setFromTriplets(entries.begin(), entries.end());
  Eigen::SimplicialLDLT<Eigen::SparseMatrix<double>, Eigen::Lower> ldlt(a);
  if (ldlt.info() != Eigen::Success) throw std::runtime_error("Eigen SimplicialLDLT failed");
  const Eigen::Map<const Eigen::VectorXd> b(rhs.data(), n);
  const Eigen::VectorXd u = ldlt.solve(b);
  return {u.data(), u.data() + n};
}

}  // namespace reference

}  // namespace opforge
