#pragma once
// Process-wide allocator tuning for executables (the CLI, benchmarks).
//
// Operators allocate image-sized buffers (1–30 MB at 1 MP) again and again.
// glibc serves blocks above its mmap threshold with fresh mmap()s, so every
// such buffer is page-faulted in and zeroed anew — on a virtual machine that
// costs more than the filtering (local_laplacian at 1 MP: 1.5 s → 0.6 s).
// Raising the threshold to its 32 MiB maximum and keeping freed memory lets
// those buffers be reused. A library never changes this behind its caller's
// back: executables opt in by calling this once at start-up.
namespace opforge {

void reuse_large_allocations();

}  // namespace opforge
