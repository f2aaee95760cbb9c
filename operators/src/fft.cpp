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

struct AlignedFree {
  void operator()(void* p) const { fftw_free(p); }
};

template <typename T>
T* aligned_alloc_or_throw(std::size_t n) {
  auto* p = static_cast<T*>(fftw_malloc(sizeof(T) * (n ? n : 1)));
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

// Plans for one (rows, cols) size, made once per process and never destroyed.
struct RealFft2d::Plans {
  fftw_plan row_r2c = nullptr;    // one row, in place
  fftw_plan row_c2r = nullptr;
  fftw_plan col_fwd_block = nullptr;  // kColumnBlock contiguous columns
  fftw_plan col_bwd_block = nullptr;
  fftw_plan col_fwd_one = nullptr;    // the tail columns, one at a time
  fftw_plan col_bwd_one = nullptr;

  // Transforms `count` ≤ kColumnBlock contiguous columns of length `rows` in place.
  void columns(int sign, RealFft2d::Complex* buf, int count, int rows) const {
    auto* p = reinterpret_cast<fftw_complex*>(buf);
    if (count == kColumnBlock) {
      fftw_execute_dft(sign == FFTW_FORWARD ? col_fwd_block : col_bwd_block, p, p);
    } else {
      fftw_plan one = sign == FFTW_FORWARD ? col_fwd_one : col_bwd_one;
      for (int j = 0; j < count; ++j) fftw_execute_dft(one, p + j * rows, p + j * rows);
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
    auto* row = aligned_alloc_or_throw<fftw_complex>(row_stride);
    int n = cols;
    p.row_r2c = fftw_plan_many_dft_r2c(1, &n, 1, reinterpret_cast<double*>(row), nullptr, 1, 0, row, nullptr, 1, 0,
                                       flags);
    p.row_c2r = fftw_plan_many_dft_c2r(1, &n, 1, row, nullptr, 1, 0, reinterpret_cast<double*>(row), nullptr, 1, 0,
                                       flags);
    fftw_free(row);
    auto* cols_buf = aligned_alloc_or_throw<fftw_complex>(static_cast<std::size_t>(rows) * kColumnBlock);
    int m = rows;
    p.col_fwd_block = fftw_plan_many_dft(1, &m, kColumnBlock, cols_buf, nullptr, 1, rows, cols_buf, nullptr, 1, rows,
                                         FFTW_FORWARD, flags);
    p.col_bwd_block = fftw_plan_many_dft(1, &m, kColumnBlock, cols_buf, nullptr, 1, rows, cols_buf, nullptr, 1, rows,
                                         FFTW_BACKWARD, flags);
    // Tail columns start at buf + j·rows, whose alignment varies with j.
    p.col_fwd_one = fftw_plan_dft_1d(rows, cols_buf, cols_buf, FFTW_FORWARD, flags | FFTW_UNALIGNED);
    p.col_bwd_one = fftw_plan_dft_1d(rows, cols_buf, cols_buf, FFTW_BACKWARD, flags | FFTW_UNALIGNED);
    fftw_free(cols_buf);
    if (!p.row_r2c || !p.row_c2r || !p.col_fwd_block || !p.col_bwd_block || !p.col_fwd_one || !p.col_bwd_one) {
      throw std::runtime_error("FFTW could not plan a " + std::to_string(rows) + "x" + std::to_string(cols) +
                               " transform");
    }
    return &p;
  }
};

namespace {

using Complex = RealFft2d::Complex;

fftw_complex* as_fftw(Complex* p) { return reinterpret_cast<fftw_complex*>(p); }

// Per-thread column workspace, reused across calls.
struct ColumnWorkspace {
  std::unique_ptr<Complex, AlignedFree> buffer;
  std::size_t size = 0;
  Complex* get(std::size_t n) {
    if (n > size) {
      buffer.reset(reinterpret_cast<Complex*>(aligned_alloc_or_throw<fftw_complex>(n)));
      size = n;
    }
    return buffer.get();
  }
};

tbb::enumerable_thread_specific<ColumnWorkspace>& column_workspaces() {
  static tbb::enumerable_thread_specific<ColumnWorkspace> ws;
  return ws;
}

// The column pass: for each channel and block of spectrum columns, gather the
// block into a contiguous buffer, transform it forward, then
// `body(channel, u0, count, buffer)`.
template <typename Body>
void for_each_column_block(int channels, int spectrum_cols, int rows, const Body& body) {
  const int blocks = (spectrum_cols + kColumnBlock - 1) / kColumnBlock;
  tbb::parallel_for(0, channels * blocks, [&](int task) {
    const int channel = task / blocks;
    const int u0 = (task % blocks) * kColumnBlock;
    const int count = std::min(kColumnBlock, spectrum_cols - u0);
    Complex* buf = column_workspaces().local().get(static_cast<std::size_t>(rows) * kColumnBlock);
    body(channel, u0, count, buf);
  });
}

void gather(const Complex* work, std::size_t row_stride, int rows, int u0, int count, Complex* buf) {
  for (int v = 0; v < rows; ++v) {
    const Complex* src = work + v * row_stride + u0;
    for (int j = 0; j < count; ++j) buf[j * rows + v] = src[j];
  }
}

void scatter(const Complex* buf, int rows, int u0, int count, Complex* work, std::size_t row_stride) {
  for (int v = 0; v < rows; ++v) {
    Complex* dst = work + v * row_stride + u0;
    for (int j = 0; j < count; ++j) dst[j] = buf[j * rows + v];
  }
}

}  // namespace

RealFft2d::RealFft2d(int rows, int cols, int channels)
    : rows_(rows),
      cols_(cols),
      channels_(channels),
      row_stride_(static_cast<std::size_t>((cols / 2 + 1 + 1) & ~1)) {
  if (rows < 1 || cols < 1 || channels < 1 || channels > kMaxChannels) {
    throw std::invalid_argument("RealFft2d: invalid size " + std::to_string(rows) + "x" + std::to_string(cols) + "x" +
                                std::to_string(channels));
  }
  // An even number of complex values per row keeps every row 32-byte aligned.
  plans_ = Plans::get(rows, cols, row_stride_);
  work_ = reinterpret_cast<Complex*>(
      aligned_alloc_or_throw<fftw_complex>(static_cast<std::size_t>(channels) * rows * row_stride_));
}

RealFft2d::~RealFft2d() { fftw_free(work_); }

void RealFft2d::rows_forward(const RowFn& produce) {
  tbb::parallel_for(0, rows_, [&](int y) {
    double* row[kMaxChannels];
    for (int c = 0; c < channels_; ++c) row[c] = reinterpret_cast<double*>(work(c) + y * row_stride_);
    produce(y, row);
    for (int c = 0; c < channels_; ++c) fftw_execute_dft_r2c(plans_->row_r2c, row[c], as_fftw(work(c) + y * row_stride_));
  });
}

void RealFft2d::rows_inverse(double* const* out, std::size_t stride, double scale) {
  tbb::parallel_for(0, rows_, [&](int y) {
    for (int c = 0; c < channels_; ++c) {
      Complex* row = work(c) + y * row_stride_;
      auto* real = reinterpret_cast<double*>(row);
      fftw_execute_dft_c2r(plans_->row_c2r, as_fftw(row), real);
      double* dst = out[c] + y * stride;
      for (int x = 0; x < cols_; ++x) dst[x] = real[x] * scale;
    }
  });
}

void RealFft2d::forward(const double* const* images, std::size_t stride, Complex* const* spectra) {
  rows_forward([&](int y, double* const* row) {
    for (int c = 0; c < channels_; ++c) std::memcpy(row[c], images[c] + y * stride, sizeof(double) * cols_);
  });
  const Plans* plans = plans_;
  const int rows = rows_;
  for_each_column_block(channels_, spectrum_cols(), rows_, [&](int c, int u0, int count, Complex* buf) {
    gather(work(c), row_stride_, rows, u0, count, buf);
    plans->columns(FFTW_FORWARD, buf, count, rows);
    std::copy(buf, buf + static_cast<std::size_t>(rows) * count, spectra[c] + static_cast<std::size_t>(u0) * rows);
  });
}

void RealFft2d::filter(const RowFn& produce, double* const* out, std::size_t out_stride, double scale,
                       const BlockFn& modify) {
  rows_forward(produce);
  const Plans* plans = plans_;
  const int rows = rows_;
  for_each_column_block(channels_, spectrum_cols(), rows_, [&](int c, int u0, int count, Complex* buf) {
    gather(work(c), row_stride_, rows, u0, count, buf);
    plans->columns(FFTW_FORWARD, buf, count, rows);
    modify(c, u0, count, buf);
    plans->columns(FFTW_BACKWARD, buf, count, rows);
    scatter(buf, rows, u0, count, work(c), row_stride_);
  });
  rows_inverse(out, out_stride, scale);
}

}  // namespace opforge
