#version 450
#extension GL_GOOGLE_include_directive : require
#include "activation_type.glsl"
// A layer's epilogue over a window, in place: z = scale[c]·y + shift[c]
// (the normaliser folded into one scale and shift per channel), plus the
// residual, then the activation.
layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Values { ACTIVATION data[]; } values;
layout(std430, binding = 1) readonly buffer ScaleShift { vec2 data[]; } affine;  // [channel]
layout(std430, binding = 2) readonly buffer Residual { ACTIVATION data[]; } residual;

layout(push_constant) uniform Geometry {
  int count, channels;
  int offset;            // the values' window's first element in its tensor
  int first;             // the band's first element in the tensor
  int residual_offset;   // the residual window's first element; < 0: no residual
  int activation;        // 0 none, 1 leaky ReLU, 2 ReLU
  float slope;
} g;

void main() {
  const int i = int(gl_GlobalInvocationID.x) + int(gl_GlobalInvocationID.y) * 65535 * 256;
  if (i >= g.count) return;
  const int e = g.first + i;
  const vec2 a = affine.data[e % g.channels];
  float z = a.x * float(values.data[e - g.offset]) + a.y;
  if (g.residual_offset >= 0) z += float(residual.data[e - g.residual_offset]);
  if (g.activation == 1) z = max(g.slope * z, z);
  else if (g.activation == 2) z = max(0.0, z);
  values.data[e - g.offset] = ACTIVATION(z);
}
