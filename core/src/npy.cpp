// NumPy .npy (format 1.0–3.0) for float32 arrays only: H×W or H×W×C,
// little-endian ('<f4'), C order. The header is a Python dict literal; it is
// parsed strictly (no regular expressions: libstdc++'s recurse per character
// and overflow the stack on a long header), with exactly the three keys NumPy
// writes and at most NumPy's own max_header_size of 10000 bytes.

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"

namespace opforge {
namespace {

constexpr std::size_t kMaxHeaderBytes = 10000;

// The header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string error_prefix) : text_(text), bad_(std::move(error_prefix)) {}

  // key → raw value text: a quoted string's contents, True/False, or "(a, b, c)".
  std::map<std::string, std::string> parse() {
    std::map<std::string, std::string> entries;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = quoted();
      expect(':');
      skip_space();
      std::string value;
      if (peek() == '\'' || peek() == '"') {
        value = quoted();
      } else if (peek() == '(') {
        const std::size_t close = text_.find(')', pos_);
        if (close == std::string_view::npos) fail("an unclosed shape tuple");
        value = std::string(text_.substr(pos_, close + 1 - pos_));
        pos_ = close + 1;
      } else if (text_.substr(pos_, 4) == "True") {
        value = "True";
        pos_ += 4;
      } else if (text_.substr(pos_, 5) == "False") {
        value = "False";
        pos_ += 5;
      } else {
        fail("an unsupported value for '" + key + "'");
      }
      if (!entries.emplace(key, value).second) fail("'" + key + "' given twice");
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("',' or '}' expected");
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) fail("text after the dict");
    return entries;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(bad_ + "malformed .npy header (" + what + ")"); }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("'") + c + "' expected");
    ++pos_;
  }
  std::string quoted() {
    skip_space();
    const char q = peek();
    if (q != '\'' && q != '"') fail("a quoted key or string expected");
    const std::size_t end = text_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("an unclosed string");
    std::string out(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }

  std::string_view text_;
  std::string bad_;
  std::size_t pos_ = 0;
};

}  // namespace

cv::Mat decode_npy(std::span<const std::uint8_t> bytes, const std::string& name, const DecodeLimits& limits) {
  const std::string bad = "cannot read '" + name + "': ";
  if (bytes.size() < 10) throw Error(bad + "truncated .npy file");
  const int major = bytes[6];
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(bad + "truncated .npy file");
    header_len = bytes[8] | (bytes[9] << 8) | (bytes[10] << 16) | (static_cast<std::size_t>(bytes[11]) << 24);
    offset = 12;
  } else {
    throw Error(bad + "unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > bytes.size() - offset) throw Error(bad + "truncated .npy header");
  if (header_len > kMaxHeaderBytes) {
    throw Error(bad + ".npy header of " + std::to_string(header_len) + " bytes; valid: at most 10000 (NumPy's limit)");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes.data() + offset), header_len);
  offset += header_len;

  std::map<std::string, std::string> entries = HeaderParser(header, bad).parse();
  for (const auto& [key, value] : entries) {
    if (key != "descr" && key != "fortran_order" && key != "shape") {
      throw Error(bad + "malformed .npy header (unknown key '" + key + "')");
    }
  }
  for (const char* key : {"descr", "fortran_order", "shape"}) {
    if (!entries.count(key)) throw Error(bad + "malformed .npy header (no '" + key + "')");
  }
  const std::string& descr = entries["descr"];
  if (descr != "<f4") {
    throw Error(bad + "dtype '" + descr + "' is not supported; valid: float32 little-endian ('<f4')");
  }
  if (entries["fortran_order"] != "False") {
    throw Error(bad + "Fortran-order arrays are not supported; valid: C order");
  }
  const std::string& shape_text = entries["shape"];
  if (shape_text.size() < 2 || shape_text.front() != '(') {
    throw Error(bad + "shape '" + shape_text + "' is malformed; valid: (H, W) or (H, W, C) of positive integers");
  }
  // "(H, W)" or "(H, W, C)": each entry a plain decimal number (no sign).
  std::vector<long long> shape;
  {
    const std::string inner = shape_text.substr(1, shape_text.size() - 2);
    std::size_t start = 0;
    while (start <= inner.size()) {
      const std::size_t comma = std::min(inner.find(',', start), inner.size());
      std::string item = inner.substr(start, comma - start);
      item.erase(0, item.find_first_not_of(" "));
      item.erase(item.find_last_not_of(" ") + 1);
      start = comma + 1;
      if (item.empty() && comma == inner.size() && !shape.empty()) break;  // the trailing comma of "(48,)"
      if (item.empty() || item.size() > 12 || item.find_first_not_of("0123456789") != std::string::npos) {
        throw Error(bad + "shape " + shape_text + " is malformed; valid: (H, W) or (H, W, C) of positive integers");
      }
      shape.push_back(std::stoll(item));
    }
  }
  if (shape.size() != 2 && shape.size() != 3) {
    throw Error(bad + "shape " + shape_text + " is not supported; valid: (H, W) or (H, W, C)");
  }
  const long long h = shape[0], w = shape[1], c = shape.size() == 3 ? shape[2] : 1;
  if (h < 1 || w < 1 || c < 1 || h > 65536 || w > 65536 || c > 4) {
    throw Error(bad + "shape " + shape_text + " is out of range; valid: 1..65536 rows and columns, 1..4 channels");
  }
  check_image_dimensions(name, static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h), static_cast<int>(c), 0,
                         limits);
  const std::size_t need = static_cast<std::size_t>(h * w * c) * sizeof(float);
  if (bytes.size() - offset != need) {
    throw Error(bad + "data size " + std::to_string(bytes.size() - offset) + " bytes does not match shape " +
                shape_text + " (" + std::to_string(need) + " bytes)");
  }
  cv::Mat m(static_cast<int>(h), static_cast<int>(w), CV_MAKETYPE(CV_32F, static_cast<int>(c)));
  std::memcpy(m.data, bytes.data() + offset, need);  // x86/ARM hosts are little-endian
  if (const auto bad_value = first_bad_value(m)) throw Error("cannot use '" + name + "': " + describe_bad_value(*bad_value));
  return m;
}

std::vector<std::uint8_t> encode_npy(const cv::Mat& image) {
  CV_Assert(image.depth() == CV_32F);
  const cv::Mat m = image.isContinuous() ? image : image.clone();  // a region of a larger image, say
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows) + ", " +
                       std::to_string(m.cols) + (m.channels() == 1 ? "" : ", " + std::to_string(m.channels())) +
                       "), }";
  // Pad with spaces so that magic + length + header + '\n' is a multiple of 64.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  const std::uint8_t preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                     static_cast<std::uint8_t>(header.size() & 0xFF),
                                     static_cast<std::uint8_t>(header.size() >> 8)};
  const std::size_t data_bytes = m.total() * m.elemSize();
  std::vector<std::uint8_t> out(sizeof preamble + header.size() + data_bytes);
  std::memcpy(out.data(), preamble, sizeof preamble);
  std::memcpy(out.data() + sizeof preamble, header.data(), header.size());
  std::memcpy(out.data() + sizeof preamble + header.size(), m.data, data_bytes);
  return out;
}

}  // namespace opforge
