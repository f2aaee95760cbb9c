#version 450
#extension GL_GOOGLE_include_directive : require
#include "activation_type.glsl"
// Per-row sums of y and y² for each channel of a band of rows of an HWC
// window: one workgroup per (row, channel), a tree over the row's pixels, so
// a 4K row's sum is as accurate as a pairwise float sum. The host adds the
// rows in float64, in order.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Values { ACTIVATION data[]; } values;
layout(std430, binding = 1) writeonly buffer Sums { vec2 data[]; } sums;  // [row][channel]

layout(push_constant) uniform Geometry {
  int cols, channels;
  int offset;       // the window's first element in its tensor
  int first_row;    // the band's first row in the tensor
} g;

shared vec2 partial[64];

void main() {
  const int row = int(gl_WorkGroupID.y);
  const int c = int(gl_WorkGroupID.x);
  const int t = int(gl_LocalInvocationID.x);
  vec2 s = vec2(0.0);
  const int base = (g.first_row + row) * g.cols * g.channels + c - g.offset;
  for (int x = t; x < g.cols; x += 64) {
    const float v = float(values.data[base + x * g.channels]);
    s += vec2(v, v * v);
  }
  partial[t] = s;
  barrier();
  for (int step = 32; step > 0; step >>= 1) {
    if (t < step) partial[t] += partial[t + step];
    barrier();
  }
  if (t == 0) sums.data[(g.first_row + row) * g.channels + c] = partial[0];
}
