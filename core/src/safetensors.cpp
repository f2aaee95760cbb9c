#include "opforge/core/safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"

namespace opforge {
namespace {

constexpr std::uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

std::size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// a * b with overflow detection.
bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace

std::size_t TensorInfo::element_count() const {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

SafeTensors SafeTensors::parse(std::vector<std::uint8_t> bytes, const std::string& source_name) {
  const std::string bad = "cannot read safetensors '" + source_name + "': ";
  SafeTensors st;
  st.source_ = source_name;
  st.file_ = std::move(bytes);
  const auto& file = st.file_;
  if (file.size() < 8) throw Error(bad + "file shorter than the 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  if (n > kMaxHeader) {
    throw Error(bad + "header length " + std::to_string(n) + " exceeds the 100 MiB limit (not a safetensors file?)");
  }
  if (n > file.size() - 8) {
    throw Error(bad + "header length " + std::to_string(n) + " runs past the end of the file (" +
                std::to_string(file.size()) + " bytes)");
  }
  st.data_offset_ = 8 + static_cast<std::size_t>(n);
  const std::size_t data_size = file.size() - st.data_offset_;
  const auto header = nlohmann::json::parse(file.begin() + 8, file.begin() + static_cast<std::ptrdiff_t>(8 + n),
                                            nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) throw Error(bad + "header is not valid JSON");
  if (!header.is_object()) throw Error(bad + "header is not a JSON object");

  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(bad + "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) throw Error(bad + "__metadata__ value of '" + key + "' is not a string");
        st.metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = bad + "tensor '" + name + "': ";
    if (!entry.is_object()) throw Error(where + "entry is not an object");
    const auto dtype = entry.find("dtype");
    const auto shape = entry.find("shape");
    const auto offsets = entry.find("data_offsets");
    if (dtype == entry.end() || !dtype->is_string()) throw Error(where + "missing or non-string dtype");
    if (shape == entry.end() || !shape->is_array()) throw Error(where + "missing or non-array shape");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
      throw Error(where + "data_offsets must be an array of two integers");
    }
    TensorInfo info;
    info.dtype = dtype->get<std::string>();
    const std::size_t esize = dtype_size(info.dtype);
    if (esize == 0) throw Error(where + "unknown dtype '" + info.dtype + "'");
    std::size_t count = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) throw Error(where + "shape entries must be non-negative integers");
      const auto dim = d.get<std::uint64_t>();
      if (!checked_mul(count, static_cast<std::size_t>(dim), count)) throw Error(where + "shape overflows");
      info.shape.push_back(static_cast<std::int64_t>(dim));
    }
    for (const auto& o : *offsets) {
      if (!o.is_number_unsigned()) throw Error(where + "data_offsets must be non-negative integers");
    }
    info.begin = (*offsets)[0].get<std::uint64_t>();
    info.end = (*offsets)[1].get<std::uint64_t>();
    if (info.begin > info.end || info.end > data_size) {
      throw Error(where + "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                  "] lie outside the data section (" + std::to_string(data_size) + " bytes)");
    }
    std::size_t nbytes = 0;
    if (!checked_mul(count, esize, nbytes) || nbytes != info.end - info.begin) {
      throw Error(where + "shape and dtype need " + std::to_string(nbytes) + " bytes but data_offsets span " +
                  std::to_string(info.end - info.begin));
    }
    ranges.emplace_back(info.begin, info.end);
    st.tensors_.emplace(name, std::move(info));
  }
  // The data section must be covered exactly: no overlaps, no holes.
  std::sort(ranges.begin(), ranges.end());
  std::size_t covered = 0;
  for (const auto& [b, e] : ranges) {
    if (b < covered) throw Error(bad + "tensors overlap in the data section");
    if (b > covered) throw Error(bad + "the data section has a gap at byte " + std::to_string(covered));
    covered = e;
  }
  if (covered != data_size) throw Error(bad + "the data section has unused trailing bytes");
  return st;
}

SafeTensors SafeTensors::load(const std::filesystem::path& path) { return parse(read_file(path), path.string()); }

const TensorInfo& SafeTensors::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("safetensors '" + source_ + "' has no tensor '" + name + "'");
  return it->second;
}

std::span<const std::uint8_t> SafeTensors::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  return {file_.data() + data_offset_ + t.begin, t.end - t.begin};
}

namespace {

template <typename T>
T load_le(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));  // safetensors is little-endian, as is every host we build for
  return value;
}

float bf16_to_float(std::uint16_t bits) {
  const std::uint32_t word = static_cast<std::uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

}  // namespace

std::uint16_t float_to_half(float value) {
  std::uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  const std::uint16_t sign = static_cast<std::uint16_t>((word >> 16) & 0x8000u);
  const std::uint32_t exponent = (word >> 23) & 0xffu;
  std::uint32_t mantissa = word & 0x7fffffu;
  if (exponent == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  const int e = static_cast<int>(exponent) - 127 + 15;
  if (e >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow: infinity
  if (e <= 0) {
    // Subnormal half (or zero): shift the full mantissa into place, rounding
    // to nearest even on the bits shifted out.
    if (e < -10) return sign;
    mantissa |= 0x800000u;
    const int shift = 14 - e;
    const std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t midpoint = 1u << (shift - 1);
    const std::uint32_t rounded = half + ((rest > midpoint || (rest == midpoint && (half & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | rounded);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(e) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
  return static_cast<std::uint16_t>(sign | half);
}

float half_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t word;
  if (exponent == 0x1f) {
    word = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    word = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    word = sign;
  } else {
    int e = -14;  // normalise the subnormal
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    word = sign | (static_cast<std::uint32_t>(e + 127) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

std::vector<double> SafeTensors::read_f64(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto raw = bytes(name);
  std::vector<double> out(t.element_count());
  const std::uint8_t* p = raw.data();
  if (t.dtype == "F64") {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_le<double>(p + 8 * i);
  } else if (t.dtype == "F32") {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = load_le<float>(p + 4 * i);
  } else if (t.dtype == "F16") {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = half_to_float(load_le<std::uint16_t>(p + 2 * i));
  } else if (t.dtype == "BF16") {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(load_le<std::uint16_t>(p + 2 * i));
  } else {
    throw Error("safetensors '" + source_ + "': tensor '" + name + "' is " + t.dtype +
                ", expected a floating-point dtype (F64, F32, F16, BF16)");
  }
  return out;
}

std::vector<float> SafeTensors::read_f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype == "F32") {
    std::vector<float> out(t.element_count());
    const auto raw = bytes(name);
    if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
    return out;
  }
  const std::vector<double> wide = read_f64(name);
  std::vector<float> out(wide.size());
  for (std::size_t i = 0; i < wide.size(); ++i) {
    if (std::isfinite(wide[i]) && std::abs(wide[i]) > std::numeric_limits<float>::max()) {
      throw Error("safetensors '" + source_ + "': tensor '" + name + "' holds " + std::to_string(wide[i]) +
                  " at element " + std::to_string(i) + ", beyond float32's range");
    }
    out[i] = static_cast<float>(wide[i]);
  }
  return out;
}

std::vector<std::int64_t> SafeTensors::read_i64(const std::string& name) const {
  const TensorInfo& t = info(name);
  const auto raw = bytes(name);
  const std::uint8_t* p = raw.data();
  std::vector<std::int64_t> out(t.element_count());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == "I64") out[i] = load_le<std::int64_t>(p + 8 * i);
    else if (t.dtype == "I32") out[i] = load_le<std::int32_t>(p + 4 * i);
    else if (t.dtype == "I16") out[i] = load_le<std::int16_t>(p + 2 * i);
    else if (t.dtype == "I8") out[i] = load_le<std::int8_t>(p + i);
    else if (t.dtype == "U32") out[i] = load_le<std::uint32_t>(p + 4 * i);
    else if (t.dtype == "U16") out[i] = load_le<std::uint16_t>(p + 2 * i);
    else if (t.dtype == "U8" || t.dtype == "BOOL") out[i] = p[i];
    else if (t.dtype == "U64") {
      const auto v = load_le<std::uint64_t>(p + 8 * i);
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw Error("safetensors '" + source_ + "': tensor '" + name + "' holds " + std::to_string(v) +
                    " at element " + std::to_string(i) + ", beyond int64's range");
      }
      out[i] = static_cast<std::int64_t>(v);
    } else {
      throw Error("safetensors '" + source_ + "': tensor '" + name + "' is " + t.dtype +
                  ", expected an integer dtype (I64, I32, I16, I8, U64, U32, U16, U8, BOOL)");
    }
  }
  return out;
}

namespace {

std::size_t shape_count(const std::vector<std::int64_t>& shape, const char* who) {
  std::size_t count = 1;
  for (auto d : shape) {
    if (d < 0) throw Error(std::string("safetensors writer: ") + who + " has a negative dimension");
    if (!checked_mul(count, static_cast<std::size_t>(d), count)) throw Error(std::string("safetensors writer: ") + who + " overflows");
  }
  return count;
}

template <typename T>
Tensor typed_tensor(const char* dtype, std::vector<std::int64_t> shape, std::span<const T> values) {
  if (shape_count(shape, "a tensor") != values.size()) {
    throw Error("safetensors writer: " + std::to_string(values.size()) + " values do not fill shape of " +
                std::to_string(shape_count(shape, "a tensor")) + " elements");
  }
  Tensor t{dtype, std::move(shape), std::vector<std::uint8_t>(values.size() * sizeof(T))};
  if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

}  // namespace

Tensor Tensor::f32(std::vector<std::int64_t> shape, std::span<const float> values) {
  return typed_tensor("F32", std::move(shape), values);
}
Tensor Tensor::f64(std::vector<std::int64_t> shape, std::span<const double> values) {
  return typed_tensor("F64", std::move(shape), values);
}
Tensor Tensor::i64(std::vector<std::int64_t> shape, std::span<const std::int64_t> values) {
  return typed_tensor("I64", std::move(shape), values);
}
Tensor Tensor::f16(std::vector<std::int64_t> shape, std::span<const float> values) {
  std::vector<std::uint16_t> halves(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) halves[i] = float_to_half(values[i]);
  return typed_tensor<std::uint16_t>("F16", std::move(shape), halves);
}

std::vector<std::uint8_t> encode_safetensors(const std::map<std::string, Tensor>& tensors,
                                             const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error("safetensors writer: '__metadata__' is not a tensor name");
    const std::size_t esize = dtype_size(t.dtype);
    if (esize == 0) throw Error("safetensors writer: tensor '" + name + "' has unknown dtype '" + t.dtype + "'");
    const std::size_t count = shape_count(t.shape, ("tensor '" + name + "'").c_str());
    if (count * esize != t.data.size()) {
      throw Error("safetensors writer: tensor '" + name + "' has " + std::to_string(t.data.size()) +
                  " bytes but its shape and dtype need " + std::to_string(count * esize));
    }
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> out(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::size_t pos = 8 + text.size();
  for (const auto& [name, t] : tensors) {
    if (!t.data.empty()) std::memcpy(out.data() + pos, t.data.data(), t.data.size());
    pos += t.data.size();
  }
  return out;
}

void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, encode_safetensors(tensors, metadata));
}

}  // namespace opforge
