#pragma once
// The network spec: what a model file says about its network, read from and
// written to the safetensors `__metadata__` (docs/models.md).
//
// The published CAN files (Chen, Xu, Koltun, ICCV 2017) define the format: a
// JSON `layers` list in execution order, each entry with name, kernel, cin,
// cout, dilation, padding, bias, normalizer and activation, and HWIO weight
// tensors named `LAYER/weights`, `LAYER/w0`, `LAYER/w1`, `LAYER/BatchNorm/beta`,
// `LAYER/biases`. Files opforge writes add `opforge_spec_version`, the input
// planes, the channel order and the output quantisation; a file without a
// version is read as one of the three published CAN architectures, whose
// conventions (BGR in, truncation on output) are fixed by the paper's code.
//
// Version 1 names every layer field the learner's networks need (`stride`,
// `transposed`, `residual_from`, `generated`, instance normalisation, ReLU,
// the fan_edges input): a reader refuses, with one line, a value it cannot
// execute, and a later version number marks a file this build cannot read
// at all.

#include <map>
#include <string>
#include <vector>

namespace opforge::model {

/// The newest spec version this build reads and the one it writes.
inline constexpr int kSpecVersion = 1;

enum class Normalizer {
  none,
  /// CAN's adaptive normalisation z = w0·y + w1·BN(y), BN with the current
  /// image's own per-channel mean and biased variance, no gamma.
  adaptive_bn,
  /// Instance normalisation with a learned per-channel scale and shift,
  /// z = γ·(y − μ)/√(σ² + ε) + β over the image's own H×W (Fan et al.;
  /// PyTorch's InstanceNorm2d(affine=True)), ε = NetworkSpec::in_epsilon.
  instance,
};

/// Which of a layer's learned values are produced from the network's weight
/// inputs (Fan et al.'s weight-learning network): each such value is an
/// affine function of the vector p of weight inputs, v = Σ_k A[k]·p[k] + b,
/// stored as `NAME` (b) and `NAME_from_params` (A, a leading dimension of
/// one row per weight input).
enum class Generated {
  none,
  weights,  ///< the convolution kernel
  norm,     ///< the instance normalisation's γ and β (cheap parameter tuning)
};

/// What the network sees of the image and what it gives back.
enum class InputTransform {
  none,       ///< the image in [0,1], the output in [0,1]
  /// Fan et al.'s input: the image ×255, then an edge plane E (for each
  /// channel |∂x| between horizontal neighbours added to both pixels, the
  /// same for |∂y|, summed over the channels, /3, /4), then 128 subtracted
  /// from every plane; the output is in [0,255] (÷255 back to [0,1]).
  fan_edges,
};

enum class Activation { none, leaky_relu, relu };

/// One convolution: out[y,x,o] = Σ in[y·s+(ky−kh/2)·d, x·s+(kx−kw/2)·d, i]·W[ky,kx,i,o]
/// with zero padding ("SAME"; ⌈H/s⌉ × ⌈W/s⌉ outputs), then the normaliser,
/// then the residual addition, then the activation.
///
/// A transposed layer is PyTorch's ConvTranspose2d with kernel 4, stride 2,
/// padding 1 (input pixel i adds to outputs 2i − 1 + k): it doubles the size,
/// and its output is cut to the size of the input of the stride-2 layer it
/// undoes (the latest one not yet undone, as brackets pair), so an odd H or
/// W comes back as it went in (the extra last row or column is dropped).
struct LayerSpec {
  std::string name;
  int kernel_h = 3, kernel_w = 3;  ///< odd, 1..15 (4×4 for a transposed layer)
  int cin = 0, cout = 0;
  int dilation = 1;
  int stride = 1;                  ///< 1 or 2 (2 for a transposed layer)
  bool transposed = false;
  bool bias = false;
  Normalizer normalizer = Normalizer::none;
  /// The name of an earlier (or this) layer whose *input* is added after
  /// the normaliser; empty for none (Fan et al.'s residual blocks).
  std::string residual_from;
  Activation activation = Activation::none;
  float negative_slope = 0.2f;     ///< leaky ReLU: max(slope·z, z)
  Generated generated = Generated::none;

  /// Rows (or columns) of zeros a layer reads beyond the image on each side.
  int reach_y() const { return (kernel_h / 2) * dilation; }
  int reach_x() const { return (kernel_w / 2) * dilation; }
};

enum class ChannelOrder { rgb, bgr };
/// How [0,1] outputs become integers: round to nearest (opforge's rule for
/// images), or truncate (what the published CAN scripts did: np.uint8(x·255)).
enum class Quantisation { round, truncate };

/// A constant extra input plane, after the image's channels.
///
/// A plane that carries an operator parameter says which one and how its
/// range maps onto [min, max] (linearly, or linearly in log v), so that a
/// training row's `params` and `opforge infer --param NAME=V` give the plane
/// value the network was trained with (Model::planes_for).
struct InputPlane {
  std::string name;      ///< "parameter", or an operator name for one-hot planes
  std::string meaning;   ///< one line for `opforge model info`
  double min = 0, max = 1;  ///< valid values (`opforge infer --planes`)
  std::string param;     ///< the operator parameter it carries; empty when it carries none
  /// Whether the value is an input plane of the network (CAN) or an element
  /// of the vector p the generated weights are computed from (Fan et al.).
  bool feeds_weights = false;
  bool log_scale = false;   ///< map log(v) rather than v
  double param_lo = 0, param_hi = 1;  ///< the parameter values that map onto min and max

  /// A plane with values in [0, 1] that carries no parameter.
  static InputPlane unmapped(std::string name, std::string meaning = {}) {
    InputPlane p;
    p.name = std::move(name);
    p.meaning = std::move(meaning);
    return p;
  }
  /// The plane value for parameter value v; throws Error when v lies
  /// outside [param_lo, param_hi] (the network never saw it).
  float value_for(double v) const;
};

struct NetworkSpec {
  int version = kSpecVersion;
  std::string architecture;              ///< "can24_an", ...; free text for new networks
  int image_channels = 3;                ///< colour channels in and out
  ChannelOrder channel_order = ChannelOrder::rgb;
  Quantisation quantisation = Quantisation::round;
  std::vector<InputPlane> planes;        ///< constant planes after the image channels
  bool one_hot_operators = false;        ///< planes are operator codes (`--operator NAME`)
  double bn_epsilon = 0.001;
  double in_epsilon = 1e-5;              ///< instance normalisation's ε
  InputTransform input_transform = InputTransform::none;
  std::vector<LayerSpec> layers;

  /// Planes that enter the network as constant input channels.
  int input_planes() const;
  /// Planes that feed the generated weights (the length of p).
  int weight_inputs() const { return static_cast<int>(planes.size()) - input_planes(); }
  /// The network's input channels: the image's, an edge plane for
  /// fan_edges, then the constant input planes.
  int input_channels() const {
    return image_channels + (input_transform == InputTransform::fan_edges ? 1 : 0) + input_planes();
  }
  int output_channels() const { return layers.empty() ? 0 : layers.back().cout; }
  /// Side of the square of input pixels one output pixel depends on.
  int receptive_field() const;
  /// Multiply-accumulates of the convolutions per output pixel.
  double macs_per_pixel() const;
  /// Learned values, as the file stores them (weights, biases, w0, w1, beta).
  std::size_t parameter_count() const;
};

/// Reads the spec from a file's metadata; throws Error naming `source`, the
/// key or layer, and what is valid (unknown normaliser, layers that do not
/// chain, a version newer than kSpecVersion, ...).
NetworkSpec parse_spec(const std::map<std::string, std::string>& metadata, const std::string& source);

/// The metadata that parse_spec reads back to `spec` (a version-1 file).
std::map<std::string, std::string> spec_metadata(const NetworkSpec& spec);

/// Throws Error unless the layers chain from input_channels() to
/// image_channels and every field is within the ranges above.
void validate_spec(const NetworkSpec& spec, const std::string& source);

/// Throws Error (prefixed by `where`) unless the plane's ranges are valid.
void validate_plane(const InputPlane& plane, const std::string& where);

const char* to_string(Normalizer n);
const char* to_string(Generated g);
const char* to_string(Activation a);

}  // namespace opforge::model
