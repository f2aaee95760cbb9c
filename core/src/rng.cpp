#include "opforge/core/rng.hpp"

#include <cmath>
#include <numbers>

namespace opforge {

std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> c, std::array<std::uint32_t, 2> k) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

std::array<std::uint32_t, 4> CounterRng::block(std::uint64_t i) const {
  return philox4x32_10({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i >> 32),
                        static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
                       {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
}

std::uint64_t CounterRng::bits(std::uint64_t i) const {
  const auto b = block(i);
  return (static_cast<std::uint64_t>(b[1]) << 32) | b[0];
}

double CounterRng::uniform(std::uint64_t i) const { return static_cast<double>(bits(i) >> 11) * 0x1.0p-53; }

double CounterRng::normal(std::uint64_t i) const {
  const auto b = block(i);
  const std::uint64_t a = (static_cast<std::uint64_t>(b[1]) << 32) | b[0];
  const std::uint64_t c = (static_cast<std::uint64_t>(b[3]) << 32) | b[2];
  // u1 in (0, 1] so the logarithm is finite.
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(c >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::uint64_t derive_seed(std::uint64_t recipe_seed, std::uint64_t source_id, std::uint64_t pair_index) {
  // Key = recipe seed, counter = (pair index, source id): a bijection per key.
  return CounterRng(recipe_seed, source_id).bits(pair_index);
}

}  // namespace opforge
