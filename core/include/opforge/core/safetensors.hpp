#pragma once
// safetensors read/write — the model file format shared by learner/ and
// vk_runtime/ (weights + the network spec in `__metadata__`).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON, then the data
// section. Parsing is bounds-checked throughout: a header length beyond the
// file, malformed JSON, unknown dtypes, shapes whose byte size does not match
// their offsets, offsets past the end, overlapping tensors, holes in the data
// section or non-string metadata all throw opforge::Error; no input crashes.

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace opforge {

struct TensorInfo {
  std::string dtype;                 ///< "F32", "F64", "I64", ... (safetensors names)
  std::vector<std::int64_t> shape;   ///< empty for a scalar
  std::size_t begin = 0, end = 0;    ///< byte range within the data section
  std::size_t element_count() const;
};

class SafeTensors {
 public:
  /// Parses a whole file. `source_name` appears in error messages.
  static SafeTensors parse(std::vector<std::uint8_t> bytes, const std::string& source_name);
  static SafeTensors load(const std::filesystem::path& path);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  /// Raw little-endian bytes of one tensor.
  std::span<const std::uint8_t> bytes(const std::string& name) const;
  /// The values of a floating-point tensor (F32, F16, BF16 or F64) as float32.
  /// F64 values beyond float32's range throw rather than turn into infinity.
  std::vector<float> read_f32(const std::string& name) const;
  /// The values of a floating-point tensor (F64, F32, F16 or BF16) as float64.
  std::vector<double> read_f64(const std::string& name) const;
  /// The values of an integer tensor (I64, I32, I16, I8, U32, U16, U8 or
  /// BOOL) as int64; U64 values above INT64_MAX throw.
  std::vector<std::int64_t> read_i64(const std::string& name) const;

 private:
  std::string source_;
  std::vector<std::uint8_t> file_;
  std::size_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A tensor to write: its dtype, shape and little-endian bytes. Build one
/// with the typed helpers; F16 rounds to nearest even (overflow gives ±inf,
/// as IEEE conversion does).
struct Tensor {
  std::string dtype = "F32";
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;

  static Tensor f32(std::vector<std::int64_t> shape, std::span<const float> values);
  static Tensor f64(std::vector<std::int64_t> shape, std::span<const double> values);
  static Tensor f16(std::vector<std::int64_t> shape, std::span<const float> values);
  static Tensor i64(std::vector<std::int64_t> shape, std::span<const std::int64_t> values);
};

/// IEEE 754 binary16 conversions (round to nearest even; NaN stays NaN).
std::uint16_t float_to_half(float value);
float half_to_float(std::uint16_t bits);

/// Serialises tensors (stored in name order, 8-byte aligned data section) and
/// string metadata; throws if a tensor's bytes do not match its dtype and
/// shape.
std::vector<std::uint8_t> encode_safetensors(const std::map<std::string, Tensor>& tensors,
                                             const std::map<std::string, std::string>& metadata);
/// encode_safetensors + atomic write.
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata);

}  // namespace opforge
