#pragma once
// 2-D real-to-complex FFT in double precision (FFTW3), for the frequency-domain
// operators (L0 smoothing).
//
// Determinism: plans are made with FFTW_ESTIMATE (no timing-based choices), the
// 2-D transform is decomposed into 1-D row and column transforms with a fixed
// blocking, and each 1-D transform always runs the same plan. So for given
// sizes the arithmetic is identical on every run and any thread count;
// FFTW_MEASURE would pick plans by timing and change results at the ULP level
// from run to run.
//
// Spectrum layout: the non-redundant half spectrum, **column-major**:
// spectrum[u·rows + v] is frequency (v, u), v ∈ [0, rows), u ∈ [0, cols/2].

#include <complex>
#include <cstddef>
#include <functional>
#include <memory>

namespace opforge {

class RealFft2d {
 public:
  using Complex = std::complex<double>;
  /// Called on blocks of spectrum columns during filter(): `block` holds
  /// columns u0 … u0+count−1, each `rows` values long, contiguous.
  using BlockFn = std::function<void(int u0, int count, Complex* block)>;
  /// Produces row y of a filter() input into `row` (cols values). Rows are
  /// requested in parallel, in no particular order.
  using RowFn = std::function<void(int y, double* row)>;

  RealFft2d(int rows, int cols);
  ~RealFft2d();
  RealFft2d(const RealFft2d&) = delete;
  RealFft2d& operator=(const RealFft2d&) = delete;

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  int spectrum_cols() const { return cols_ / 2 + 1; }
  std::size_t spectrum_size() const { return static_cast<std::size_t>(spectrum_cols()) * rows_; }

  /// Unnormalised forward transform of a rows×cols image (row stride in doubles).
  void forward(const double* image, std::size_t stride, Complex* spectrum);

  /// out = scale · inverse(modify(forward(in))): the forward transform, `modify`
  /// on each block of spectrum columns, then the unnormalised inverse transform
  /// multiplied by `scale` (pass 1/(rows·cols) for a true inverse). `in` and
  /// `out` may be the same buffer.
  void filter(const double* in, std::size_t in_stride, double* out, std::size_t out_stride, double scale,
              const BlockFn& modify);
  /// As above, with the input produced row by row straight into the
  /// transform's workspace (no intermediate image). `out` is written only
  /// after every input row has been produced, so `produce` may read `out`.
  void filter(const RowFn& produce, double* out, std::size_t out_stride, double scale, const BlockFn& modify);

 private:
  struct Plans;
  void rows_forward(const RowFn& produce);
  void rows_inverse(double* out, std::size_t stride, double scale);

  int rows_, cols_;
  std::size_t row_stride_;  // complex values per row of the row-spectrum workspace
  const Plans* plans_;
  Complex* work_;           // rows × row_stride_ (FFTW-aligned)
};

}  // namespace opforge
