#pragma once
// Shared by the fuzz targets: each is a libFuzzer entry point
// (LLVMFuzzerTestOneInput) that feeds bytes to one parser of untrusted input.
// A clean refusal is an opforge::Error; anything else escaping (another
// exception type, a crash, a sanitizer report) or a broken invariant of an
// accepted input is a bug. `bench/fuzz.sh` runs them under libFuzzer; the
// test suite replays tests/data/fuzz/<target>/ (seeds and every crash found)
// through the same entry points.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "opforge/core/error.hpp"

namespace opforge::fuzz {

/// A broken invariant of an input the parser accepted: abort, which libFuzzer
/// and the replay runner both report as a failure.
inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

/// Runs `parse` on the bytes; opforge::Error (a clean refusal) is the only
/// exception allowed out of a parser.
template <typename Fn>
int run(const std::uint8_t* data, std::size_t size, Fn&& parse) {
  try {
    parse(std::span<const std::uint8_t>(data, size));
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace opforge::fuzz
