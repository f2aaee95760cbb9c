// The activations' storage type: float32, or float16 with -DFP16 (the
// fp16-storage option; arithmetic stays float32, values are rounded to half
// precision where they are stored).
#ifdef FP16
#extension GL_EXT_shader_16bit_storage : require
#define ACTIVATION float16_t
#define ACTIVATION4 f16vec4
#else
#define ACTIVATION float
#define ACTIVATION4 vec4
#endif
