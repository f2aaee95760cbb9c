#include "opforge/operators/grid_solver.hpp"

#include <cholmod.h>
#include <dlfcn.h>
#include <omp.h>

#include <Eigen/Sparse>
#include <tbb/parallel_for.h>
#include <Eigen/SparseCholesky>
#include <cmath>
#include <memory>
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

namespace {

// Row r of y = (D + L_a)·x, from x's rows r−1, r and r+1 (north and south
// unused on the first and last rows); data empty: D = I.
void multiply_row(const GridWeights& w, std::span<const double> data, const double* north, const double* x,
                  const double* south, double* y, int r) {
  const int rows = w.rows, cols = w.cols;
  const std::size_t row = static_cast<std::size_t>(r) * cols;
  const double* h = w.horizontal.data() + row;
  const double* v = w.vertical.data() + row;
  const double* v_north = r > 0 ? v - cols : nullptr;
  const double* d = data.empty() ? nullptr : data.data() + row;
  // One pixel with every neighbour test; away from the first and last rows and
  // columns every pixel has all four neighbours, so the interior loop has no
  // branches (and the same expression).
  const auto pixel = [&](int c) {
    double s = grid_diagonal(w, data, r, c) * x[c];
    if (c + 1 < cols) s -= h[c] * x[c + 1];
    if (c > 0) s -= h[c - 1] * x[c - 1];
    if (r + 1 < rows) s -= v[c] * south[c];
    if (r > 0) s -= v_north[c] * north[c];
    y[c] = s;
  };
  if (r == 0 || r + 1 == rows || cols < 3) {
    for (int c = 0; c < cols; ++c) pixel(c);
    return;
  }
  pixel(0);
  for (int c = 1; c + 1 < cols; ++c) {
    const double diagonal = (d ? d[c] : 1.0) + (((h[c] + h[c - 1]) + v[c]) + v_north[c]);
    double s = diagonal * x[c];
    s -= h[c] * x[c + 1];
    s -= h[c - 1] * x[c - 1];
    s -= v[c] * south[c];
    s -= v_north[c] * north[c];
    y[c] = s;
  }
  pixel(cols - 1);
}

}  // namespace

void grid_multiply(const GridWeights& w, std::span<const double> data, const double* x, double* y) {
  check_grid_weights(w, data);
  const std::size_t cols = static_cast<std::size_t>(w.cols);
  tbb::parallel_for(0, w.rows, [&](int r) {
    const double* row = x + r * cols;
    multiply_row(w, data, r > 0 ? row - cols : nullptr, row, r + 1 < w.rows ? row + cols : nullptr, y + r * cols, r);
  });
}

void grid_multiply(const GridWeights& w, const double* x, double* y) { grid_multiply(w, {}, x, y); }

namespace {

// Rows of kMic0Band, row j of a band kMic0Skew columns behind row j−1 (see
// Mic0Sweeps for why the lag is not one column).
constexpr int kMic0Band = 4;
constexpr int kMic0Skew = 9;

// Calls fn(y, x) for every pixel in an order where (y, x−1) and (y−1, x)
// come before (y, x), with kMic0Band rows interleaved.
template <class Fn>
void mic0_band_order(int rows, int cols, Fn&& fn) {
  for (int first = 0; first < rows; first += kMic0Band) {
    const int band = std::min(kMic0Band, rows - first);
    const int steps = cols + (band - 1) * kMic0Skew;
    for (int t = 0; t < steps; ++t) {
      for (int j = 0; j < band; ++j) {
        const int x = t - j * kMic0Skew;
        if (x >= 0 && x < cols) fn(first + j, x);
      }
    }
  }
}

}  // namespace

Mic0Preconditioner::Mic0Preconditioner(const GridWeights& w)
    : rows_(w.rows),
      cols_(w.cols),
      inverse_diag_(static_cast<std::size_t>(w.rows) * w.cols),
      east_(inverse_diag_.size()),
      south_(inverse_diag_.size()) {
  check_grid_weights(w, {});
  // The factor is kept in float (the sweeps stream it from memory: half the
  // bytes), but built in double: the entries of the rows a band reads (its
  // own and the one above) in a ring of kMic0Band + 1 rows.
  constexpr int kRingRows = kMic0Band + 1;
  std::vector<double> east_ring(static_cast<std::size_t>(kRingRows) * cols_), south_ring(east_ring.size());
  const auto ring = [&](int y, int x) { return static_cast<std::size_t>(y % kRingRows) * cols_ + x; };
  // Pixel (y, x) needs the factor at (y, x−1) and (y−1, x): a chain of a
  // square root and a division per pixel along each row. The rows run in
  // skewed bands like the sweeps below (mic0_band_order), so that several
  // chains are in flight; every pixel keeps its expression, so the factor is
  // the natural order's, bit for bit.
  const auto factor = [&](int y, int x) {
    const std::size_t p = static_cast<std::size_t>(y) * cols_ + x;
    double d = grid_diagonal(w, {}, y, x);
    // Column p−1 (west): its east entry is L(p, p−1); the dropped fill
    // L(p,p−1)·L(p−1+cols,p−1) is taken from this diagonal (and from the
    // diagonal of p−1+cols, below).
    if (x > 0) {
      const std::size_t k = ring(y, x - 1);
      d -= east_ring[k] * east_ring[k];
      if (y + 1 < rows_) d -= east_ring[k] * south_ring[k];
    }
    // Column p−cols (north): its south entry is L(p, p−cols); its dropped
    // fill couples its east neighbour and p.
    if (y > 0) {
      const std::size_t k = ring(y - 1, x);
      d -= south_ring[k] * south_ring[k];
      if (x + 1 < cols_) d -= east_ring[k] * south_ring[k];
    }
    if (!(d > 0)) throw std::runtime_error("MIC(0) breakdown: non-positive pivot");
    const double pivot = std::sqrt(d);
    inverse_diag_[p] = static_cast<float>(1.0 / pivot);
    const std::size_t k = ring(y, x);
    east_ring[k] = x + 1 < cols_ ? -w.horizontal[p] / pivot : 0.0;
    south_ring[k] = y + 1 < rows_ ? -w.vertical[p] / pivot : 0.0;
    east_[p] = static_cast<float>(east_ring[k]);
    south_[p] = static_cast<float>(south_ring[k]);
  };
  mic0_band_order(rows_, cols_, factor);
}

void Mic0Preconditioner::apply_plain(const double* r, double* z) const {
  const std::size_t n = inverse_diag_.size();
  const std::size_t cols = static_cast<std::size_t>(cols_);
  // Forward: L t = r (column-oriented: t_p final, then push to east/south).
  // Row-oriented form: t_p = (r_p − L(p,p−1)·t_{p−1} − L(p,p−cols)·t_{p−cols}) / L(p,p).
  for (std::size_t p = 0; p < n; ++p) {
    double v = r[p];
    if (p % cols != 0) v -= east_[p - 1] * z[p - 1];
    if (p >= cols) v -= south_[p - cols] * z[p - cols];
    z[p] = v * inverse_diag_[p];
  }
  // Backward: Lᵀ z = t.
  for (std::size_t p = n; p-- > 0;) {
    double v = z[p];
    if ((p + 1) % cols != 0) v -= east_[p] * z[p + 1];
    if (p + cols < n) v -= south_[p] * z[p + cols];
    z[p] = v * inverse_diag_[p];
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
  const float* inverse_diag;
  const float* east;
  const float* south;
  std::size_t cols;

  // Forward pixel (row y, column x) with y ≥ 1: west term when x > 0.
  void forward(const double* r, double* z, std::size_t y, std::size_t x) const {
    const std::size_t p = y * cols + x;
    double v = r[p];
    if (x > 0) v -= east[p - 1] * z[p - 1];
    v -= south[p - cols] * z[p - cols];
    z[p] = v * inverse_diag[p];
  }
  // Backward pixel with y < rows − 1: east term when x < cols − 1.
  void backward(double* z, std::size_t y, std::size_t x) const {
    const std::size_t p = y * cols + x;
    double v = z[p];
    if (x + 1 < cols) v -= east[p] * z[p + 1];
    v -= south[p] * z[p + cols];
    z[p] = v * inverse_diag[p];
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
          z[p] = v * inverse_diag[p];
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
          z[p] = v * inverse_diag[p];
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
  const Mic0Sweeps s{inverse_diag_.data(), east_.data(), south_.data(), cols};
  // Forward: the first row has no north neighbour, then bands of rows.
  for (std::size_t x = 0; x < cols; ++x) {
    double v = r[x];
    if (x > 0) v -= east_[x - 1] * z[x - 1];
    z[x] = v * inverse_diag_[x];
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
    z[p] = v * inverse_diag_[p];
  }
  for (std::size_t done = 1; done < rows; done += kBand) {
    s.backward_band(z, last - done, static_cast<int>(std::min(kBand, rows - done)));
  }
}

namespace {

// Σ u[i]·v[i] over [begin, end) added to four partial sums (lane i − begin
// mod 4): a fixed order, and four additions in flight instead of one chain.
void accumulate_dot(const double* u, const double* v, std::size_t begin, std::size_t end, double s[4]) {
  std::size_t i = begin;
  for (; i + 4 <= end; i += 4) {
    for (std::size_t k = 0; k < 4; ++k) s[k] += u[i + k] * v[i + k];
  }
  for (; i < end; ++i) s[0] += u[i] * v[i];
}

double lanes_sum(const double s[4]) { return (s[0] + s[1]) + (s[2] + s[3]); }

}  // namespace

PcgResult mic0_pcg_solve(const GridWeights& w, const Mic0Preconditioner& m, const double* b, double* x,
                         double tolerance, int max_iterations) {
  const std::size_t n = static_cast<std::size_t>(w.rows) * w.cols;
  const std::size_t cols = static_cast<std::size_t>(w.cols);
  // The vector work runs over fixed blocks of rows, in parallel where a core
  // is free (the sweeps cannot be split: three channels on two cores leave
  // one idle for the last channel's solve otherwise). Every dot product is
  // summed per block, then over the blocks in order: the same bits on any
  // number of threads.
  constexpr int kBlockRows = 16;
  const int blocks = (w.rows + kBlockRows - 1) / kBlockRows;
  const auto block_rows = [&](int k) {
    return std::pair{static_cast<std::size_t>(k) * kBlockRows,
                     std::min(static_cast<std::size_t>(w.rows), static_cast<std::size_t>(k + 1) * kBlockRows)};
  };
  std::vector<double> partial(static_cast<std::size_t>(blocks));
  // Runs body(first_row, end_row) on every block and returns the sum of
  // what each returned, in block order.
  const auto over_blocks = [&](auto&& body) {
    tbb::parallel_for(0, blocks, [&](int k) {
      const auto [first, end] = block_rows(k);
      partial[static_cast<std::size_t>(k)] = body(first, end);
    });
    double sum = 0;
    for (double v : partial) sum += v;
    return sum;
  };
  const auto dot = [&](const double* u, const double* v) {
    return over_blocks([&](std::size_t first, std::size_t end) {
      double s[4] = {0, 0, 0, 0};
      accumulate_dot(u, v, first * cols, end * cols, s);
      return lanes_sum(s);
    });
  };
  std::fill(x, x + n, 0.0);
  const double norm_b = std::sqrt(dot(b, b));
  PcgResult result;
  if (norm_b == 0) {
    result.converged = true;
    return result;
  }
  const double target = tolerance * norm_b;
  // Work vectors without zero-filling them: each is written before it is read.
  const auto buffer = [n] { return std::unique_ptr<double[]>(new double[n]); };
  const auto r_store = buffer(), z = buffer(), q = buffer();
  // Two directions: the new one is formed beside the old, so a block can
  // form the rows just outside it (which its product needs) itself.
  std::unique_ptr<double[]> p = buffer(), p_old = buffer();
  double* r = r_store.get();
  std::copy(b, b + n, r);
  // The iterates: each is written next to the previous one rather than over
  // it, so that keeping the best (MATLAB returns it when PCG does not
  // converge) needs no copy; three buffers serve, `x` among them.
  const auto spare = buffer();
  std::unique_ptr<double[]> third;  // only once an iterate is worse than the best
  double* current = x;
  double* best = x;
  double rho_previous = 0, best_norm = norm_b;
  for (int it = 1; it <= max_iterations; ++it) {
    m.apply(r, z.get());
    const double rho = dot(r, z.get());
    // The memory passes are the cost (the vectors outgrow the caches), so
    // they are fused: p ← z + β·p and q ← A·p with p·q, a block at a time
    // (rows of q need p on the rows beside them); then the iterate, the
    // residual and ‖r‖² in one pass.
    const double beta = it == 1 ? 0.0 : rho / rho_previous;
    std::swap(p, p_old);
    const auto direction_row = [&](std::size_t row, double* out) {
      const double* zr = z.get() + row * cols;
      const double* old = p_old.get() + row * cols;
      for (std::size_t i = 0; i < cols; ++i) out[i] = it == 1 ? zr[i] : zr[i] + beta * old[i];
    };
    const double pq = over_blocks([&](std::size_t first, std::size_t end) {
      for (std::size_t row = first; row < end; ++row) direction_row(row, p.get() + row * cols);
      // The rows just outside the block belong to the blocks beside it: they
      // are formed here too, into rows of this block's own.
      std::vector<double> above(cols), below(cols);
      if (first > 0) direction_row(first - 1, above.data());
      if (end < static_cast<std::size_t>(w.rows)) direction_row(end, below.data());
      const auto p_row = [&](std::size_t row) -> const double* {
        if (row + 1 == first) return above.data();
        if (row == end) return below.data();
        return p.get() + row * cols;
      };
      double s[4] = {0, 0, 0, 0};
      for (std::size_t row = first; row < end; ++row) {
        multiply_row(w, {}, row > 0 ? p_row(row - 1) : nullptr, p_row(row),
                     row + 1 < static_cast<std::size_t>(w.rows) ? p_row(row + 1) : nullptr, q.get() + row * cols,
                     static_cast<int>(row));
        accumulate_dot(p.get(), q.get(), row * cols, (row + 1) * cols, s);
      }
      return lanes_sum(s);
    });
    const double alpha = rho / pq;
    double* next = nullptr;
    for (double* candidate : {x, spare.get()}) {
      if (!next && candidate != current && candidate != best) next = candidate;
    }
    if (!next) {
      if (!third) third = buffer();
      next = third.get();
    }
    const double rr = over_blocks([&](std::size_t first, std::size_t end) {
      double s[4] = {0, 0, 0, 0};
      for (std::size_t i = first * cols; i < end * cols; ++i) {
        next[i] = current[i] + alpha * p[i];
        r[i] -= alpha * q[i];
      }
      accumulate_dot(r, r, first * cols, end * cols, s);
      return lanes_sum(s);
    });
    current = next;
    const double norm_r = std::sqrt(rr);
    result.iterations = it;
    result.relative_residual = norm_r / norm_b;
    if (norm_r <= target) {
      result.converged = true;
      best = current;
      break;
    }
    if (norm_r < best_norm) {
      best_norm = norm_r;
      best = current;
    }
    rho_previous = rho;
  }
  if (!result.converged) result.relative_residual = best_norm / norm_b;
  if (best != x) std::copy(best, best + n, x);
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
