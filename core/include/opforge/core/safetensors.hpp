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
  /// The values of an F32 tensor (throws for any other dtype).
  std::vector<float> read_f32(const std::string& name) const;

 private:
  std::string source_;
  std::vector<std::uint8_t> file_;
  std::size_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A float32 tensor to write.
struct F32Tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

/// Serialises tensors (stored in name order, 8-byte aligned data section) and
/// string metadata; throws if a tensor's values do not match its shape.
std::vector<std::uint8_t> encode_safetensors(const std::map<std::string, F32Tensor>& tensors,
                                             const std::map<std::string, std::string>& metadata);
/// encode_safetensors + atomic write.
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, F32Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata);

}  // namespace opforge
