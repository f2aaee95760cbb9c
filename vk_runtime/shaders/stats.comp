#version 450
#extension GL_GOOGLE_include_directive : require
#include "activation_type.glsl"
// Per-row sums of y and y² for each channel of a band of rows of an HWC
// window: one workgroup per row, reading it front to back (neighbouring
// invocations read neighbouring values: invocation t takes channel
// t mod C of every (256 div C)-th pixel), each invocation summing its
// values in blocks of 32, then a tree over the invocations of each channel:
// no float sum is longer than a few dozen terms, and the order is fixed.
// The host adds the rows in float64, in order.
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Values { ACTIVATION data[]; } values;
layout(std430, binding = 1) writeonly buffer Sums { vec2 data[]; } sums;  // [row][channel]

layout(push_constant) uniform Geometry {
  int cols, channels;
  int offset;       // the window's first element in its tensor
  int first_row;    // the band's first row in the tensor
} g;

shared vec2 partial[256];

void main() {
  const int row = g.first_row + int(gl_WorkGroupID.x);
  const int t = int(gl_LocalInvocationID.x);
  const int base = row * g.cols * g.channels - g.offset;
  // Channels [c0, c0 + span) at a time: all of them unless there are more than 256.
  for (int c0 = 0; c0 < g.channels; c0 += 256) {
    const int span = min(256, g.channels - c0);
    const int lanes = 256 / span;
    const int lane = t / span, c = c0 + t % span;
    vec2 s = vec2(0.0);
    if (lane < lanes) {
      // In blocks of 32 values, so no float sum runs longer than a few dozen terms.
      for (int x = lane; x < g.cols;) {
        vec2 block = vec2(0.0);
        for (int k = 0; k < 32 && x < g.cols; ++k, x += lanes) {
          const float v = float(values.data[base + x * g.channels + c]);
          block += vec2(v, v * v);
        }
        s += block;
      }
    }
    partial[t] = s;
    barrier();
    // A tree over the lanes, each channel's partial sums apart by `span`.
    for (int step = 128; step > 0; step >>= 1) {
      if (step < lanes && lane < step && lane + step < lanes) partial[t] += partial[t + step * span];
      barrier();
    }
    if (t < span) sums.data[row * g.channels + c0 + t] = partial[t];
    barrier();
  }
}
