#include "opforge/core/safetensors.hpp"

#include <algorithm>
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
  if (n > kMaxHeader) throw Error(bad + "header length " + std::to_string(n) + " exceeds the 100 MiB limit");
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

std::vector<float> SafeTensors::read_f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype != "F32") throw Error("safetensors '" + source_ + "': tensor '" + name + "' is " + t.dtype + ", expected F32");
  std::vector<float> out(t.element_count());
  const auto raw = bytes(name);
  std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

std::vector<std::uint8_t> encode_safetensors(const std::map<std::string, F32Tensor>& tensors,
                                             const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::size_t count = 1;
    for (auto d : t.shape) {
      if (d < 0) throw Error("safetensors writer: tensor '" + name + "' has a negative dimension");
      count *= static_cast<std::size_t>(d);
    }
    if (count != t.values.size()) {
      throw Error("safetensors writer: tensor '" + name + "' has " + std::to_string(t.values.size()) +
                  " values but its shape needs " + std::to_string(count));
    }
    const std::size_t nbytes = count * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> out(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::size_t pos = 8 + text.size();
  for (const auto& [name, t] : tensors) {
    if (!t.values.empty()) std::memcpy(out.data() + pos, t.values.data(), t.values.size() * sizeof(float));
    pos += t.values.size() * sizeof(float);
  }
  return out;
}

void save_safetensors(const std::filesystem::path& path, const std::map<std::string, F32Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, encode_safetensors(tensors, metadata));
}

}  // namespace opforge
