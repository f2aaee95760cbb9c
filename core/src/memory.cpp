#include "opforge/core/memory.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "opforge/core/error.hpp"

namespace opforge {
namespace {

double mem_available() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key;
    double kib = 0;
    if (in >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return std::numeric_limits<double>::infinity();  // unknown: do not refuse
}

// A cgroup v2 file holding one number, or "max".
double cgroup_value(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return std::numeric_limits<double>::infinity();
  try {
    return std::stod(text);
  } catch (const std::exception&) {
    return std::numeric_limits<double>::infinity();
  }
}

// memory.max − memory.current of this process's cgroup (v2), +inf without one.
double cgroup_headroom() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, relative;
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) == 0) relative = line.substr(3);
  }
  if (relative.empty()) return std::numeric_limits<double>::infinity();
  // Inside a container the cgroup namespace makes the process's own group "/".
  const std::string dir = "/sys/fs/cgroup" + (relative == "/" ? std::string() : relative);
  const double max = cgroup_value(dir + "/memory.max");
  if (!std::isfinite(max)) return max;
  const double current = cgroup_value(dir + "/memory.current");
  return std::isfinite(current) ? std::max(0.0, max - current) : max;
}

double address_space_headroom() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return std::numeric_limits<double>::infinity();
  }
  std::ifstream statm("/proc/self/statm");
  double pages = 0;
  if (!(statm >> pages)) return static_cast<double>(limit.rlim_cur);
  const double mapped = pages * static_cast<double>(::sysconf(_SC_PAGESIZE));
  return std::max(0.0, static_cast<double>(limit.rlim_cur) - mapped);
}

}  // namespace

MemoryBudget memory_budget() {
  MemoryBudget budget{mem_available(), "available memory"};
  if (const double c = cgroup_headroom(); c < budget.bytes) budget = {c, "the cgroup's memory.max"};
  if (const double a = address_space_headroom(); a < budget.bytes) budget = {a, "the address-space limit (ulimit -v)"};
  return budget;
}

std::string format_bytes(double bytes) {
  char buf[32];
  if (bytes >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  }
  return buf;
}

void require_memory(std::string_view who, std::string_view what, double bytes) {
  const MemoryBudget budget = memory_budget();
  if (bytes <= budget.bytes) return;
  throw Error(std::string(who) + ": " + std::string(what) + " needs an estimated " + format_bytes(bytes) +
              " of memory, but only " + format_bytes(budget.bytes) + " is available (" + budget.limited_by +
              "); use a smaller image (crop or resize it) or free memory");
}

void reuse_large_allocations() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
}

}  // namespace opforge
