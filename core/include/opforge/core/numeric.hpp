#pragma once
// Small numeric helpers shared by the operators.

namespace opforge {

/// floor(x) as an index in 0..n-1, clamped while still floating point: a cast
/// of a NaN, an infinity or a value beyond int's range to int is undefined
/// behaviour (a garbage index), so clamping after the cast is not enough.
inline int clamped_index(double x, int n) {
  if (!(x >= 1.0)) return 0;  // NaN, negative and [0, 1)
  if (x >= static_cast<double>(n - 1)) return n - 1;
  return static_cast<int>(x);  // truncation is floor for x >= 0
}

}  // namespace opforge
