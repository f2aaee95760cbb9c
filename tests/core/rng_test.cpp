#include "opforge/core/rng.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace opforge {
namespace {

// Known-answer vectors of Philox4x32-10 from the Random123 distribution.
TEST(Philox, MatchesKnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (std::array<std::uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}),
            (std::array<std::uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (std::array<std::uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(CounterRng, IsAPureFunctionOfSeedStreamAndIndex) {
  const CounterRng a(42, 7), b(42, 7), c(43, 7), d(42, 8);
  for (std::uint64_t i : {0ull, 1ull, 1000ull, 1ull << 40}) {
    EXPECT_EQ(a.bits(i), b.bits(i));
    EXPECT_NE(a.bits(i), c.bits(i));
    EXPECT_NE(a.bits(i), d.bits(i));
  }
}

TEST(CounterRng, UniformAndNormalHaveTheRightMoments) {
  const CounterRng rng(2026);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform(i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u;
    const double z = rng.normal(i);
    sn += z;
    sn2 += z * z;
  }
  // 5-sigma bounds: uniform mean sd = sqrt(1/12/n); normal mean sd = 1/sqrt(n), var sd = sqrt(2/n).
  EXPECT_NEAR(su / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(sn / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(sn2 / n, 1.0, 5 * std::sqrt(2.0 / n));
}

TEST(DeriveSeed, DistinctInputsGiveDistinctSeeds) {
  std::set<std::uint64_t> seen;
  for (std::uint64_t s = 0; s < 3; ++s) {
    for (std::uint64_t src = 0; src < 50; ++src) {
      for (std::uint64_t pair = 0; pair < 20; ++pair) seen.insert(derive_seed(s, src, pair));
    }
  }
  EXPECT_EQ(seen.size(), 3u * 50u * 20u);
  EXPECT_EQ(derive_seed(1, 2, 3), derive_seed(1, 2, 3));
}

}  // namespace
}  // namespace opforge
