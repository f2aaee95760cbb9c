#pragma once
// Memory: what this process may still allocate, refusing work up front that
// would not fit, and allocator tuning for executables.

#include <cstddef>
#include <string>
#include <string_view>

namespace opforge {

/// Bytes this process can still allocate now, and which limit binds.
struct MemoryBudget {
  double bytes = 0;          ///< +infinity when no limit is known
  std::string limited_by;    ///< "available memory", "the cgroup's memory.max" or "the address-space limit (ulimit -v)"
};

/// The least of: the kernel's MemAvailable, the cgroup (v2) memory.max less
/// its memory.current, and RLIMIT_AS less the address space already mapped.
/// A scheduler's limit (Slurm, Kubernetes) is a cgroup's, so it counts too.
MemoryBudget memory_budget();

/// Throws opforge::Error "WHO: WHAT needs an estimated 2.3 GiB of memory, but
/// only 1.0 GiB is available (LIMIT); …" when `bytes` exceeds memory_budget().
/// Called before the allocation, so the refusal is one line, not an OOM kill.
void require_memory(std::string_view who, std::string_view what, double bytes);

/// "2.3 GiB", "512.0 MiB": a byte count for messages.
std::string format_bytes(double bytes);

/// Process-wide allocator tuning for executables (the CLI, benchmarks).
///
/// Operators allocate image-sized buffers (1–30 MB at 1 MP) again and again.
/// glibc serves blocks above its mmap threshold with fresh mmap()s, so every
/// such buffer is page-faulted in and zeroed anew — on a virtual machine that
/// costs more than the filtering (local_laplacian at 1 MP: 1.5 s → 0.6 s).
/// Raising the threshold to its 32 MiB maximum and keeping freed memory lets
/// those buffers be reused. A library never changes this behind its caller's
/// back: executables opt in by calling this once at start-up.
void reuse_large_allocations();

}  // namespace opforge
