#pragma once
// The few BLAS/LAPACK routines the grid Cholesky calls, through the Fortran
// interface every BLAS offers (Debian's OpenBLAS by default, any libblas.so.3
// / liblapack.so.3 alternative otherwise). The trailing size_t arguments are
// gfortran's hidden string lengths.

#include <cstddef>

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, std::size_t);
void dtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb, std::size_t,
            std::size_t, std::size_t, std::size_t);
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha, const double* a,
            const int* lda, const double* beta, double* c, const int* ldc, std::size_t, std::size_t);
void dtrsv_(const char* uplo, const char* trans, const char* diag, const int* n, const double* a, const int* lda,
            double* x, const int* incx, std::size_t, std::size_t, std::size_t);
void dgemv_(const char* trans, const int* m, const int* n, const double* alpha, const double* a, const int* lda,
            const double* x, const int* incx, const double* beta, double* y, const int* incy, std::size_t);
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info, std::size_t);
void strsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const float* alpha, const float* a, const int* lda, float* b, const int* ldb, std::size_t, std::size_t,
            std::size_t, std::size_t);
void ssyrk_(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha, const float* a,
            const int* lda, const float* beta, float* c, const int* ldc, std::size_t, std::size_t);
void strsv_(const char* uplo, const char* trans, const char* diag, const int* n, const float* a, const int* lda,
            float* x, const int* incx, std::size_t, std::size_t, std::size_t);
void sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
            const float* x, const int* incx, const float* beta, float* y, const int* incy, std::size_t);
}

namespace opforge {

// The same routines by element type, for code templated on float/double.
namespace blas {
inline void potrf(const char* uplo, int n, double* a, int lda, int& info) { dpotrf_(uplo, &n, a, &lda, &info, 1); }
inline void potrf(const char* uplo, int n, float* a, int lda, int& info) { spotrf_(uplo, &n, a, &lda, &info, 1); }
inline void trsm(const char* side, const char* uplo, const char* trans, const char* diag, int m, int n, double alpha,
                 const double* a, int lda, double* b, int ldb) {
  dtrsm_(side, uplo, trans, diag, &m, &n, &alpha, a, &lda, b, &ldb, 1, 1, 1, 1);
}
inline void trsm(const char* side, const char* uplo, const char* trans, const char* diag, int m, int n, float alpha,
                 const float* a, int lda, float* b, int ldb) {
  strsm_(side, uplo, trans, diag, &m, &n, &alpha, a, &lda, b, &ldb, 1, 1, 1, 1);
}
inline void syrk(const char* uplo, const char* trans, int n, int k, double alpha, const double* a, int lda, double beta,
                 double* c, int ldc) {
  dsyrk_(uplo, trans, &n, &k, &alpha, a, &lda, &beta, c, &ldc, 1, 1);
}
inline void syrk(const char* uplo, const char* trans, int n, int k, float alpha, const float* a, int lda, float beta,
                 float* c, int ldc) {
  ssyrk_(uplo, trans, &n, &k, &alpha, a, &lda, &beta, c, &ldc, 1, 1);
}
inline void trsv(const char* uplo, const char* trans, int n, const double* a, int lda, double* x) {
  const int one = 1;
  dtrsv_(uplo, trans, "N", &n, a, &lda, x, &one, 1, 1, 1);
}
inline void trsv(const char* uplo, const char* trans, int n, const float* a, int lda, float* x) {
  const int one = 1;
  strsv_(uplo, trans, "N", &n, a, &lda, x, &one, 1, 1, 1);
}
inline void gemv(const char* trans, int m, int n, double alpha, const double* a, int lda, const double* x, double beta,
                 double* y) {
  const int one = 1;
  dgemv_(trans, &m, &n, &alpha, a, &lda, x, &one, &beta, y, &one, 1);
}
inline void gemv(const char* trans, int m, int n, float alpha, const float* a, int lda, const float* x, float beta,
                 float* y) {
  const int one = 1;
  sgemv_(trans, &m, &n, &alpha, a, &lda, x, &one, &beta, y, &one, 1);
}
}  // namespace blas

/// Keeps OpenBLAS to one thread per call (a no-op with any other BLAS):
/// opforge's parallelism is TBB's (channels, subtrees), and a fixed BLAS
/// thread count keeps results independent of --threads. Idempotent.
void single_threaded_blas();

}  // namespace opforge
