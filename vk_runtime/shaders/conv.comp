#version 450
#extension GL_GOOGLE_include_directive : require
#include "activation_type.glsl"
// One convolution layer over a band of output rows: out = bias + Σ in·W,
// zero padding ("SAME"), stride 1 or 2, or PyTorch's 4×4 stride-2 padding-1
// transposed convolution. Each invocation computes GROUPS × 4 output
// channels (a specialisation constant, 1..8: the pipeline is built once per
// value) of PIXELS pixels of one row (specialisation constant 2, 1..4), so
// that each input value it loads feeds up to 32 multiply-adds and each
// weight it loads up to PIXELS × 4. The input and output are windows of HWC
// float tensors: element (y, x, c) of a tensor sits at
// (y·cols + x)·channels + c − offset in the window bound here.
// Columns per workgroup: the device's subgroup size (specialisation
// constant 1) times PIXELS; an invocation's pixels are a subgroup apart, so
// that neighbouring invocations still read and write neighbouring pixels.
layout(local_size_x_id = 1, local_size_y = 4, local_size_z = 1) in;
layout(constant_id = 0) const int GROUPS = 8;
layout(constant_id = 2) const int PIXELS = 1;
// 1: the input's channel count is a multiple of 4, read four channels per load (src4).
layout(constant_id = 3) const int VECTOR_INPUT = 0;
const int CHANNELS = VECTOR_INPUT != 0 ? 4 : 1;

layout(std430, binding = 0) readonly buffer Input { ACTIVATION data[]; } src;
// The same window four channels at a time, for inputs whose channel count is
// a multiple of 4 (the window then starts at a multiple of 4 elements).
layout(std430, binding = 0) readonly buffer Input4 { ACTIVATION4 data[]; } src4;
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

// The input element index of each pixel's tap (iy, ix), or −1 outside the
// input (the tap then adds nothing).
int tap_base(int iy, int ix) {
  if (ix < 0 || ix >= g.in_cols) return -1;
  return (iy * g.in_cols + ix) * g.cin - g.in_offset;
}

void main() {
  const int width = int(gl_WorkGroupSize.x);
  const int x0 = int(gl_WorkGroupID.x) * width * PIXELS + int(gl_LocalInvocationID.x);
  const int y = g.out_row0 + int(gl_GlobalInvocationID.y);
  const int first_group = int(gl_GlobalInvocationID.z) * GROUPS;
  if (x0 >= g.out_cols || int(gl_GlobalInvocationID.y) >= g.band_rows) return;
  vec4 sum[PIXELS * GROUPS];
  for (int k = 0; k < GROUPS; ++k) {
    const vec4 b = bias.data[first_group + k];
    for (int p = 0; p < PIXELS; ++p) sum[p * GROUPS + k] = b;
  }
  int base[PIXELS];
  for (int ky = 0; ky < (g.transposed == 0 ? g.kernel_h : 4); ++ky) {
    int iy;
    if (g.transposed == 0) {
      iy = y * g.stride + (ky - g.kernel_h / 2) * g.dilation;
    } else {
      // Input pixel i adds to outputs 2i − 1 + k: output o reads i = (o + 1 − k) / 2.
      const int ty = y + 1 - ky;
      iy = (ty < 0 || (ty & 1) != 0) ? -1 : ty >> 1;
    }
    if (iy < 0 || iy >= g.in_rows) continue;
    for (int kx = 0; kx < (g.transposed == 0 ? g.kernel_w : 4); ++kx) {
      bool any = false;
      for (int p = 0; p < PIXELS; ++p) {
        const int x = x0 + p * width;
        int ix;
        if (g.transposed == 0) {
          ix = x * g.stride + (kx - g.kernel_w / 2) * g.dilation;
        } else {
          const int tx = x + 1 - kx;
          ix = (tx < 0 || (tx & 1) != 0) ? -1 : tx >> 1;
        }
        base[p] = x < g.out_cols ? tap_base(iy, ix) : -1;
        any = any || base[p] >= 0;
      }
      if (!any) continue;
      const int taps_w = g.transposed == 0 ? g.kernel_w : 4;
      int w = (ky * taps_w + kx) * g.cin * g.weight_groups + first_group;
      // CHANNELS input channels per load (4 with VECTOR_INPUT: a quarter of
      // the load instructions), each feeding GROUPS × 4 × PIXELS multiply-adds.
      for (int c = 0; c < g.cin; c += CHANNELS, w += CHANNELS * g.weight_groups) {
        vec4 v[PIXELS];
        for (int p = 0; p < PIXELS; ++p) {
          if (base[p] < 0) v[p] = vec4(0.0);
          else if (VECTOR_INPUT != 0) v[p] = vec4(src4.data[(base[p] + c) >> 2]);
          else v[p] = vec4(float(src.data[base[p] + c]), 0.0, 0.0, 0.0);
        }
        for (int j = 0; j < CHANNELS; ++j) {
          for (int k = 0; k < GROUPS; ++k) {
            const vec4 wk = weights.data[w + j * g.weight_groups + k];
            for (int p = 0; p < PIXELS; ++p) sum[p * GROUPS + k] += v[p][j] * wk;
          }
        }
      }
    }
  }
  for (int p = 0; p < PIXELS; ++p) {
    const int x = x0 + p * width;
    if (x >= g.out_cols) break;
    const int o = (y * g.out_cols + x) * g.cout - g.out_offset;
    for (int k = 0; k < GROUPS; ++k) {
      const int c0 = (first_group + k) * 4;
      if (c0 >= g.cout) break;
      for (int j = 0; j < 4 && c0 + j < g.cout; ++j) dst.data[o + c0 + j] = ACTIVATION(sum[p * GROUPS + k][j]);
    }
  }
}
