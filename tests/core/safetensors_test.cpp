#include "opforge/core/safetensors.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <cmath>
#include <random>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

// A safetensors file from a literal header and data size.
std::vector<std::uint8_t> file_with_header(const std::string& header, std::size_t data_bytes,
                                           std::uint64_t declared = UINT64_MAX) {
  const std::uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::vector<std::uint8_t> out(8 + header.size() + data_bytes, 0);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  std::copy(header.begin(), header.end(), out.begin() + 8);
  return out;
}

std::string parse_error(const std::vector<std::uint8_t>& bytes) {
  try {
    SafeTensors::parse(bytes, "t.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

TEST(SafeTensors, ReadsThePublishedCan24Model) {
  const auto st = SafeTensors::load(test::data_path("models/L0_smoothing.safetensors"));
  EXPECT_EQ(st.metadata().at("architecture"), "can24_an");
  EXPECT_EQ(st.metadata().at("layout"), "HWIO");
  const auto& w = st.info("g_conv1/weights");
  EXPECT_EQ(w.dtype, "F32");
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{3, 3, 3, 24}));
  EXPECT_EQ(st.read_f32("g_conv_last/biases").size(), 3u);
  EXPECT_TRUE(st.info("g_conv1/w0").shape.empty());  // scalar
  // 37,219 parameters + 384 unused moving statistics (models/README.md).
  std::size_t total = 0;
  for (const auto& [name, info] : st.tensors()) total += info.element_count();
  EXPECT_EQ(total, 37219u + 384u);
  const auto layers = nlohmann::json::parse(st.metadata().at("layers"));
  EXPECT_EQ(layers.size(), 9u);  // g_conv1..7, g_conv9, g_conv_last
}

TEST(SafeTensors, RoundTripsTensorsAndMetadata) {
  const std::vector<float> b = {1, 2, 3, 4, 5, 6}, a = {42.5f};
  std::map<std::string, Tensor> tensors = {
      {"b", Tensor::f32({2, 3}, b)}, {"a", Tensor::f32({}, a)}, {"empty", Tensor::f32({0, 4}, {})}};
  const auto bytes = encode_safetensors(tensors, {{"spec", "{\"x\": 1}"}});
  EXPECT_EQ((bytes[0] | (bytes[1] << 8)) % 8, 0);  // data section 8-byte aligned
  const auto st = SafeTensors::parse(bytes, "mem");
  EXPECT_EQ(st.metadata().at("spec"), "{\"x\": 1}");
  EXPECT_EQ(st.read_f32("b"), b);
  EXPECT_EQ(st.read_f32("a"), a);
  EXPECT_EQ(st.info("empty").element_count(), 0u);
  EXPECT_THROW(Tensor::f32({2, 2}, b), Error);  // 6 values do not fill 2x2
  EXPECT_THROW(encode_safetensors({{"bad", Tensor{"F32", {2}, {1, 2, 3}}}}, {}), Error);
  EXPECT_THROW(encode_safetensors({{"bad", Tensor{"F33", {1}, {1, 2, 3, 4}}}}, {}), Error);
}

TEST(SafeTensors, RoundTripsTheCheckpointDtypes) {
  const std::vector<double> wide = {1.0 / 3.0, -2.5e-300, 1e300};
  const std::vector<float> narrow = {0.1f, -65504.0f, 1e-7f};
  const std::vector<std::int64_t> steps = {0, -1, INT64_MAX, INT64_MIN};
  const auto st = SafeTensors::parse(
      encode_safetensors({{"d", Tensor::f64({3}, wide)}, {"h", Tensor::f16({3}, narrow)}, {"i", Tensor::i64({2, 2}, steps)}},
                         {}),
      "mem");
  EXPECT_EQ(st.info("d").dtype, "F64");
  EXPECT_EQ(st.info("h").dtype, "F16");
  EXPECT_EQ(st.read_f64("d"), wide);
  EXPECT_EQ(st.read_i64("i"), steps);
  const auto halves = st.read_f32("h");
  EXPECT_NEAR(halves[0], 0.1f, 0.1f / 2048);  // 11 significant bits
  EXPECT_EQ(halves[1], -65504.0f);            // the largest half, exact
  EXPECT_NEAR(halves[2], 1e-7f, 3e-8f);       // a subnormal half
  // A float64 beyond float32's range is refused, not turned into infinity.
  EXPECT_NE(test::error_of([&] { st.read_f32("d"); }).find("beyond float32's range"), std::string::npos);
  EXPECT_NE(test::error_of([&] { st.read_f32("i"); }).find("expected a floating-point dtype"), std::string::npos);
  EXPECT_NE(test::error_of([&] { st.read_i64("h"); }).find("expected an integer dtype"), std::string::npos);
}

TEST(SafeTensors, HalfConversionRoundsToNearestEven) {
  // Every half converts to float and back unchanged (NaNs stay NaN).
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const float f = half_to_float(static_cast<std::uint16_t>(bits));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
    } else {
      ASSERT_EQ(float_to_half(f), bits) << bits;
    }
  }
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048), 0x3c00u);                // tie: to even (1.0)
  EXPECT_EQ(float_to_half(1.0f + 3.0f / 2048), 0x3c02u);                // tie: to even (up)
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00u);                          // rounds past the largest: inf
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000u);             // half the smallest subnormal: to 0
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001u);             // above it: the smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400u);          // subnormal carries into the normals
  EXPECT_EQ(float_to_half(-0.0f), 0x8000u);
}

TEST(SafeTensors, RejectsHostileHeaders) {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(parse_error(file_with_header(ok, 8)), "(parsed)");
  EXPECT_NE(parse_error({1, 2, 3}).find("shorter than"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header(ok, 8, 1ull << 62)).find("exceeds the 100 MiB limit"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header(ok, 8, 5000)).find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header("{not json", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header("[1,2]", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8))
                .find("unknown dtype 'F33'"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", 8))
                .find("outside the data section"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8))
                .find("need 12 bytes"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}})", 8))
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8))
                .find("non-negative"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                         12))
                .find("overlap"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)).find("gap"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"__metadata__":{"k":3}})", 0)).find("not a string"), std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8))
                .find("outside the data section"),
            std::string::npos);
}

TEST(SafeTensors, RandomCorruptionNeverCrashes) {
  const auto original = read_file(test::data_path("models/L0_smoothing.safetensors"));
  std::mt19937 rng(1234);
  int rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    auto bytes = original;
    const std::size_t header_end = 8 + (bytes[0] | (bytes[1] << 8) | (bytes[2] << 16));
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly corrupt the header, where parsing decisions are made.
      const std::size_t at = trial % 4 == 0 ? rng() % 8 : rng() % header_end;
      bytes[at] = static_cast<std::uint8_t>(rng());
    }
    if (trial % 5 == 0) bytes.resize(rng() % bytes.size());
    try {
      const auto st = SafeTensors::parse(bytes, "fuzz");
      for (const auto& [name, info] : st.tensors()) {
        ASSERT_LE(info.end, bytes.size());
        (void)st.bytes(name);
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
}

}  // namespace
}  // namespace opforge
