#pragma once
// 2-D real-to-complex FFT (FFTW3) in double or single precision, for the
// frequency-domain operators (L0 smoothing).
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

/// A batch of `channels` real images of one size, transformed together (the
/// channels of one image): one pass over rows and one over columns serves
/// every channel, and row producers see all channels of a row at once.
/// `Real` is double (FFTW's fftw_*) or float (fftwf_*).
template <typename Real>
class BasicRealFft2d {
 public:
  using Complex = std::complex<Real>;
  /// Called on blocks of spectrum columns of one channel during filter():
  /// `block` holds columns u0 … u0+count−1, each `rows` values long, contiguous.
  using BlockFn = std::function<void(int channel, int u0, int count, Complex* block)>;
  /// Produces row y of every channel's filter() input: `row[c]` receives cols
  /// values for channel c. Rows are requested in parallel, in no particular order.
  using RowFn = std::function<void(int y, Real* const* row)>;

  BasicRealFft2d(int rows, int cols, int channels = 1);
  ~BasicRealFft2d();
  BasicRealFft2d(const BasicRealFft2d&) = delete;
  BasicRealFft2d& operator=(const BasicRealFft2d&) = delete;

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  int channels() const { return channels_; }
  int spectrum_cols() const { return cols_ / 2 + 1; }
  /// Complex values in one channel's spectrum.
  std::size_t spectrum_size() const { return static_cast<std::size_t>(spectrum_cols()) * rows_; }

  /// Unnormalised forward transforms: images[c] (rows×cols, row stride in
  /// values) → spectra[c] (spectrum_size() values each).
  void forward(const Real* const* images, std::size_t stride, Complex* const* spectra);

  /// out[c] = scale · inverse(modify(forward(in[c]))) for every channel: the
  /// forward transform, `modify` on each block of spectrum columns, then the
  /// unnormalised inverse transform multiplied by `scale` (1/(rows·cols) for a
  /// true inverse). The input is produced row by row straight into the
  /// transform's workspace; `out` is written only after every input row of
  /// every channel has been produced, so `produce` may read `out`.
  void filter(const RowFn& produce, Real* const* out, std::size_t out_stride, Real scale, const BlockFn& modify);

 private:
  struct Plans;
  void rows_forward(const RowFn& produce);
  void rows_inverse(Real* const* out, std::size_t stride, Real scale);
  Complex* work(int channel) const { return work_ + static_cast<std::size_t>(channel) * rows_ * row_stride_; }

  int rows_, cols_, channels_;
  std::size_t row_stride_;  // complex values per row of the row-spectrum workspace
  const Plans* plans_;
  Complex* work_;           // channels × rows × row_stride_ (FFTW-aligned)
};

using RealFft2d = BasicRealFft2d<double>;

}  // namespace opforge
