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
}

namespace opforge {

/// Keeps OpenBLAS to one thread per call (a no-op with any other BLAS):
/// opforge's parallelism is TBB's (channels, subtrees), and a fixed BLAS
/// thread count keeps results independent of --threads. Idempotent.
void single_threaded_blas();

}  // namespace opforge
