#include "opforge/operators/fft.hpp"

#include <fftw3.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace opforge {
namespace {

// Columns transformed together; fixed so that each column always runs the
// same plan whatever the thread count.
constexpr int kColumnBlock = 4;
constexpr int kMaxChannels = 4;

// FFTW's planner is not thread-safe; executing a plan is.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

// FFTW's double (fftw_*) and single-precision (fftwf_*) interfaces under one name.
template <typename Real>
struct Fftw;

template <>
struct Fftw<double> {
  using plan = fftw_plan;
  using complex = fftw_complex;
  static void* malloc(std::size_t n) { return fftw_malloc(n); }
  static void free(void* p) { fftw_free(p); }
  static plan r2c(int n, double* in, complex* out, unsigned flags) {
    return fftw_plan_many_dft_r2c(1, &n, 1, in, nullptr, 1, 0, out, nullptr, 1, 0, flags);
  }
  static plan c2r(int n, complex* in, double* out, unsigned flags) {
    return fftw_plan_many_dft_c2r(1, &n, 1, in, nullptr, 1, 0, out, nullptr, 1, 0, flags);
  }
  static plan many(int m, int howmany, complex* buf, int dist, int sign, unsigned flags) {
    return fftw_plan_many_dft(1, &m, howmany, buf, nullptr, 1, dist, buf, nullptr, 1, dist, sign, flags);
  }
  static plan one(int m, complex* buf, int sign, unsigned flags) { return fftw_plan_dft_1d(m, buf, buf, sign, flags); }
  static void dft(plan p, complex* in, complex* out) { fftw_execute_dft(p, in, out); }
  static void dft_r2c(plan p, double* in, complex* out) { fftw_execute_dft_r2c(p, in, out); }
  static void dft_c2r(plan p, complex* in, double* out) { fftw_execute_dft_c2r(p, in, out); }
};

template <>
struct Fftw<float> {
  using plan = fftwf_plan;
  using complex = fftwf_complex;
  static void* malloc(std::size_t n) { return fftwf_malloc(n); }
  static void free(void* p) { fftwf_free(p); }
  static plan r2c(int n, float* in, complex* out, unsigned flags) {
    return fftwf_plan_many_dft_r2c(1, &n, 1, in, nullptr, 1, 0, out, nullptr, 1, 0, flags);
  }
  static plan c2r(int n, complex* in, float* out, unsigned flags) {
    return fftwf_plan_many_dft_c2r(1, &n, 1, in, nullptr, 1, 0, out, nullptr, 1, 0, flags);
  }
  static plan many(int m, int howmany, complex* buf, int dist, int sign, unsigned flags) {
    return fftwf_plan_many_dft(1, &m, howmany, buf, nullptr, 1, dist, buf, nullptr, 1, dist, sign, flags);
  }
  static plan one(int m, complex* buf, int sign, unsigned flags) { return fftwf_plan_dft_1d(m, buf, buf, sign, flags); }
  static void dft(plan p, complex* in, complex* out) { fftwf_execute_dft(p, in, out); }
  static void dft_r2c(plan p, float* in, complex* out) { fftwf_execute_dft_r2c(p, in, out); }
  static void dft_c2r(plan p, complex* in, float* out) { fftwf_execute_dft_c2r(p, in, out); }
};

template <typename Real>
struct AlignedFree {
  void operator()(void* p) const { Fftw<Real>::free(p); }
};

// n values of std::complex<Real>, FFTW-aligned.
template <typename Real>
std::complex<Real>* aligned_complex_or_throw(std::size_t n) {
  auto* p = static_cast<std::complex<Real>*>(Fftw<Real>::malloc(sizeof(std::complex<Real>) * (n ? n : 1)));
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

// Plans for one (rows, cols) size, made once per process and never destroyed.
template <typename Real>
struct BasicRealFft2d<Real>::Plans {
  using F = Fftw<Real>;
  typename F::plan row_r2c = nullptr;        // one row, in place
  typename F::plan row_c2r = nullptr;
  typename F::plan col_fwd_block = nullptr;  // kColumnBlock contiguous columns
  typename F::plan col_bwd_block = nullptr;
  typename F::plan col_fwd_one = nullptr;    // the tail columns, one at a time
  typename F::plan col_bwd_one = nullptr;

  // Transforms `count` ≤ kColumnBlock contiguous columns of length `rows` in place.
  void columns(int sign, Complex* buf, int count, int rows) const {
    auto* p = reinterpret_cast<typename F::complex*>(buf);
    if (count == kColumnBlock) {
      F::dft(sign == FFTW_FORWARD ? col_fwd_block : col_bwd_block, p, p);
    } else {
      auto one = sign == FFTW_FORWARD ? col_fwd_one : col_bwd_one;
      for (int j = 0; j < count; ++j) F::dft(one, p + j * rows, p + j * rows);
    }
  }

  static const Plans* get(int rows, int cols, std::size_t row_stride) {
    // Plans live as long as the process: never destroyed, so no exit-time
    // destructor runs after FFTW or leaves them unreachable (LeakSanitizer).
    static auto& cache = *new std::map<std::pair<int, int>, Plans>;
    std::lock_guard lock(planner_mutex());
    auto [it, inserted] = cache.try_emplace({rows, cols});
    if (!inserted) return &it->second;
    Plans& p = it->second;
    const unsigned flags = FFTW_ESTIMATE | FFTW_DESTROY_INPUT;
    // Plan on scratch arrays with the same alignment as the ones we execute on.
    auto* row = reinterpret_cast<typename F::complex*>(aligned_complex_or_throw<Real>(row_stride));
    p.row_r2c = F::r2c(cols, reinterpret_cast<Real*>(row), row, flags);
    p.row_c2r = F::c2r(cols, row, reinterpret_cast<Real*>(row), flags);
    F::free(row);
    auto* cols_buf = reinterpret_cast<typename F::complex*>(
        aligned_complex_or_throw<Real>(static_cast<std::size_t>(rows) * kColumnBlock));
    p.col_fwd_block = F::many(rows, kColumnBlock, cols_buf, rows, FFTW_FORWARD, flags);
    p.col_bwd_block = F::many(rows, kColumnBlock, cols_buf, rows, FFTW_BACKWARD, flags);
    // Tail columns start at buf + j·rows, whose alignment varies with j.
    p.col_fwd_one = F::one(rows, cols_buf, FFTW_FORWARD, flags | FFTW_UNALIGNED);
    p.col_bwd_one = F::one(rows, cols_buf, FFTW_BACKWARD, flags | FFTW_UNALIGNED);
    F::free(cols_buf);
    if (!p.row_r2c || !p.row_c2r || !p.col_fwd_block || !p.col_bwd_block || !p.col_fwd_one || !p.col_bwd_one) {
      throw std::runtime_error("FFTW could not plan a " + std::to_string(rows) + "x" + std::to_string(cols) +
                               " transform");
    }
    return &p;
  }
};

namespace {

// Per-thread column workspace, reused across calls.
template <typename Real>
struct ColumnWorkspace {
  std::unique_ptr<std::complex<Real>, AlignedFree<Real>> buffer;
  std::size_t size = 0;
  std::complex<Real>* get(std::size_t n) {
    if (n > size) {
      buffer.reset(aligned_complex_or_throw<Real>(n));
      size = n;
    }
    return buffer.get();
  }
};

template <typename Real>
tbb::enumerable_thread_specific<ColumnWorkspace<Real>>& column_workspaces() {
  static tbb::enumerable_thread_specific<ColumnWorkspace<Real>> ws;
  return ws;
}

// The column pass: for each channel and block of spectrum columns, gather the
// block into a contiguous buffer, transform it forward, then
// `body(channel, u0, count, buffer)`.
template <typename Real, typename Body>
void for_each_column_block(int channels, int spectrum_cols, int rows, const Body& body) {
  const int blocks = (spectrum_cols + kColumnBlock - 1) / kColumnBlock;
  tbb::parallel_for(0, channels * blocks, [&](int task) {
    const int channel = task / blocks;
    const int u0 = (task % blocks) * kColumnBlock;
    const int count = std::min(kColumnBlock, spectrum_cols - u0);
    std::complex<Real>* buf = column_workspaces<Real>().local().get(static_cast<std::size_t>(rows) * kColumnBlock);
    body(channel, u0, count, buf);
  });
}

template <typename Complex>
void gather(const Complex* work, std::size_t row_stride, int rows, int u0, int count, Complex* buf) {
  for (int v = 0; v < rows; ++v) {
    const Complex* src = work + v * row_stride + u0;
    for (int j = 0; j < count; ++j) buf[j * rows + v] = src[j];
  }
}

template <typename Complex>
void scatter(const Complex* buf, int rows, int u0, int count, Complex* work, std::size_t row_stride) {
  for (int v = 0; v < rows; ++v) {
    Complex* dst = work + v * row_stride + u0;
    for (int j = 0; j < count; ++j) dst[j] = buf[j * rows + v];
  }
}

}  // namespace

template <typename Real>
BasicRealFft2d<Real>::BasicRealFft2d(int rows, int cols, int channels)
    : rows_(rows),
      cols_(cols),
      channels_(channels),
      row_stride_(static_cast<std::size_t>((cols / 2 + 1 + 1) & ~1)) {
  if (rows < 1 || cols < 1 || channels < 1 || channels > kMaxChannels) {
    throw std::invalid_argument("RealFft2d: invalid size " + std::to_string(rows) + "x" + std::to_string(cols) + "x" +
                                std::to_string(channels));
  }
  // An even number of complex values per row keeps every row 16-byte (float)
  // or 32-byte (double) aligned.
  plans_ = Plans::get(rows, cols, row_stride_);
  work_ = aligned_complex_or_throw<Real>(static_cast<std::size_t>(channels) * rows * row_stride_);
}

template <typename Real>
BasicRealFft2d<Real>::~BasicRealFft2d() {
  Fftw<Real>::free(work_);
}

template <typename Real>
void BasicRealFft2d<Real>::rows_forward(const RowFn& produce) {
  using F = Fftw<Real>;
  tbb::parallel_for(0, rows_, [&](int y) {
    Real* row[kMaxChannels];
    for (int c = 0; c < channels_; ++c) row[c] = reinterpret_cast<Real*>(work(c) + y * row_stride_);
    produce(y, row);
    for (int c = 0; c < channels_; ++c) {
      F::dft_r2c(plans_->row_r2c, row[c], reinterpret_cast<typename F::complex*>(work(c) + y * row_stride_));
    }
  });
}

template <typename Real>
void BasicRealFft2d<Real>::rows_inverse(Real* const* out, std::size_t stride, Real scale) {
  using F = Fftw<Real>;
  tbb::parallel_for(0, rows_, [&](int y) {
    for (int c = 0; c < channels_; ++c) {
      Complex* row = work(c) + y * row_stride_;
      auto* real = reinterpret_cast<Real*>(row);
      F::dft_c2r(plans_->row_c2r, reinterpret_cast<typename F::complex*>(row), real);
      Real* dst = out[c] + y * stride;
      for (int x = 0; x < cols_; ++x) dst[x] = real[x] * scale;
    }
  });
}

template <typename Real>
void BasicRealFft2d<Real>::forward(const Real* const* images, std::size_t stride, Complex* const* spectra) {
  rows_forward([&](int y, Real* const* row) {
    for (int c = 0; c < channels_; ++c) std::memcpy(row[c], images[c] + y * stride, sizeof(Real) * cols_);
  });
  const Plans* plans = plans_;
  const int rows = rows_;
  for_each_column_block<Real>(channels_, spectrum_cols(), rows_, [&](int c, int u0, int count, Complex* buf) {
    gather(work(c), row_stride_, rows, u0, count, buf);
    plans->columns(FFTW_FORWARD, buf, count, rows);
    std::copy(buf, buf + static_cast<std::size_t>(rows) * count, spectra[c] + static_cast<std::size_t>(u0) * rows);
  });
}

template <typename Real>
void BasicRealFft2d<Real>::filter(const RowFn& produce, Real* const* out, std::size_t out_stride, Real scale,
                                  const BlockFn& modify) {
  rows_forward(produce);
  const Plans* plans = plans_;
  const int rows = rows_;
  for_each_column_block<Real>(channels_, spectrum_cols(), rows_, [&](int c, int u0, int count, Complex* buf) {
    gather(work(c), row_stride_, rows, u0, count, buf);
    plans->columns(FFTW_FORWARD, buf, count, rows);
    modify(c, u0, count, buf);
    plans->columns(FFTW_BACKWARD, buf, count, rows);
    scatter(buf, rows, u0, count, work(c), row_stride_);
  });
  rows_inverse(out, out_stride, scale);
}

template class BasicRealFft2d<double>;
template class BasicRealFft2d<float>;

}  // namespace opforge
