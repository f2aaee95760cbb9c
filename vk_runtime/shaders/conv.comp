#version 450
#extension GL_GOOGLE_include_directive : require
#include "activation_type.glsl"
// One convolution layer over a band of output rows: out = bias + Σ in·W,
// zero padding ("SAME"), stride 1 or 2, or PyTorch's 4×4 stride-2 padding-1
// transposed convolution. Each invocation computes GROUPS × 4 output
// channels of one pixel (a specialisation constant, 1..8: the pipeline is
// built once per value), so that each input value it loads feeds up to 32
// multiply-adds. The input and output are windows of HWC float tensors: element
// (y, x, c) of a tensor sits at (y·cols + x)·channels + c − offset in the
// window bound here.
// Columns per workgroup: the device's subgroup size (specialisation
// constant 1), so that a subgroup spans one row of pixels.
layout(local_size_x_id = 1, local_size_y = 4, local_size_z = 1) in;
layout(constant_id = 0) const int GROUPS = 8;

layout(std430, binding = 0) readonly buffer Input { ACTIVATION data[]; } src;
layout(std430, binding = 1) writeonly buffer Output { ACTIVATION data[]; } dst;
// [tap][cin][cout4 / 4], zero beyond cout
layout(std430, binding = 2) readonly buffer Weights { vec4 data[]; } weights;  // zero-padded to weight_groups
layout(std430, binding = 3) readonly buffer Bias { vec4 data[]; } bias;

layout(push_constant) uniform Geometry {
  int in_rows, in_cols, cin;
  int in_offset;               // the input window's first element in its tensor
  int out_cols, cout;
  int out_row0, out_offset;    // this dispatch's first output row; the output window's first element
  int band_rows;               // output rows in this dispatch
  int kernel_h, kernel_w, dilation, stride, transposed;
  int weight_groups;           // vec4s per (tap, input channel): cout / 4 rounded up to GROUPS
} g;

void main() {
  const int x = int(gl_GlobalInvocationID.x);
  const int y = g.out_row0 + int(gl_GlobalInvocationID.y);
  const int first_group = int(gl_GlobalInvocationID.z) * GROUPS;
  if (x >= g.out_cols || int(gl_GlobalInvocationID.y) >= g.band_rows) return;
  vec4 sum[GROUPS];
  for (int k = 0; k < GROUPS; ++k) sum[k] = bias.data[first_group + k];
  if (g.transposed == 0) {
    const int cy = g.kernel_h / 2, cx = g.kernel_w / 2;
    for (int ky = 0; ky < g.kernel_h; ++ky) {
      const int iy = y * g.stride + (ky - cy) * g.dilation;
      if (iy < 0 || iy >= g.in_rows) continue;
      for (int kx = 0; kx < g.kernel_w; ++kx) {
        const int ix = x * g.stride + (kx - cx) * g.dilation;
        if (ix < 0 || ix >= g.in_cols) continue;
        const int base = (iy * g.in_cols + ix) * g.cin - g.in_offset;
        int w = (ky * g.kernel_w + kx) * g.cin * g.weight_groups + first_group;
        for (int c = 0; c < g.cin; ++c, w += g.weight_groups) {
          const float v = float(src.data[base + c]);
          for (int k = 0; k < GROUPS; ++k) sum[k] += v * weights.data[w + k];
        }
      }
    }
  } else {
    // Input pixel i adds to outputs 2i − 1 + k: output o reads i = (o + 1 − k) / 2.
    for (int ky = 0; ky < 4; ++ky) {
      const int ty = y + 1 - ky;
      if (ty < 0 || (ty & 1) != 0) continue;
      const int iy = ty >> 1;
      if (iy >= g.in_rows) continue;
      for (int kx = 0; kx < 4; ++kx) {
        const int tx = x + 1 - kx;
        if (tx < 0 || (tx & 1) != 0) continue;
        const int ix = tx >> 1;
        if (ix >= g.in_cols) continue;
        const int base = (iy * g.in_cols + ix) * g.cin - g.in_offset;
        int w = (ky * 4 + kx) * g.cin * g.weight_groups + first_group;
        for (int c = 0; c < g.cin; ++c, w += g.weight_groups) {
          const float v = float(src.data[base + c]);
          for (int k = 0; k < GROUPS; ++k) sum[k] += v * weights.data[w + k];
        }
      }
    }
  }
  const int o = (y * g.out_cols + x) * g.cout - g.out_offset;
  for (int k = 0; k < GROUPS; ++k) {
    const int c0 = (first_group + k) * 4;
    if (c0 >= g.cout) break;
    for (int j = 0; j < 4 && c0 + j < g.cout; ++j) dst.data[o + c0 + j] = ACTIVATION(sum[k][j]);
  }
}
