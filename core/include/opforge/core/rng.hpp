#pragma once
// Deterministic, counter-based random numbers.
//
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy
// as 1, 2, 3", SC 2011): a keyed bijection of a 128-bit counter. Value i of a
// stream is a pure function of (seed, stream, i), so work split across any
// number of threads, shards or resumed runs draws exactly the same numbers.

#include <array>
#include <cstdint>

namespace opforge {

/// One Philox4x32-10 block: 4 × 32 random bits for (counter, key).
std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key);

class CounterRng {
 public:
  /// `seed` is the key; `stream` separates independent uses of the same seed.
  explicit CounterRng(std::uint64_t seed, std::uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  /// The 128 random bits of block i.
  std::array<std::uint32_t, 4> block(std::uint64_t i) const;
  /// 64 random bits for index i.
  std::uint64_t bits(std::uint64_t i) const;
  /// Uniform in [0, 1) with 53 random bits, for index i.
  double uniform(std::uint64_t i) const;
  /// Standard normal for index i (Box–Muller on the two halves of block i).
  double normal(std::uint64_t i) const;

  std::uint64_t seed() const { return seed_; }
  std::uint64_t stream() const { return stream_; }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
};

/// The seed of one datagen pair, a hash of (recipe seed, source id, pair index)
/// through Philox; distinct inputs give independent-looking 64-bit seeds.
std::uint64_t derive_seed(std::uint64_t recipe_seed, std::uint64_t source_id, std::uint64_t pair_index);

}  // namespace opforge
