#include "opforge/core/memory.hpp"

#include <malloc.h>

namespace opforge {

void reuse_large_allocations() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
}

}  // namespace opforge
