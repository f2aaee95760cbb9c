#include "opforge/model/model.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "opforge/core/io.hpp"
#include "opforge/core/safetensors.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using model::Model;

Model published(const std::string& name) { return Model::load(test::model_path(name)); }

TEST(Model, ReadsEveryPublishedCan24File) {
  // The nine CAN24_AN files: every published model but the last two.
  for (const auto& name : std::vector<std::string>(test::kPublishedModels.begin(), test::kPublishedModels.end() - 2)) {
    SCOPED_TRACE(name);
    const Model m = published(name);
    const auto& s = m.spec();
    EXPECT_EQ(s.architecture, "can24_an");
    EXPECT_EQ(s.channel_order, model::ChannelOrder::bgr);
    EXPECT_EQ(s.quantisation, model::Quantisation::truncate);
    EXPECT_TRUE(s.planes.empty());
    ASSERT_EQ(s.layers.size(), 9u);  // g_conv1..7, g_conv9, g_conv_last (no g_conv8)
    EXPECT_EQ(s.layers[6].dilation, 64);
    EXPECT_EQ(s.layers[7].name, "g_conv9");
    EXPECT_EQ(s.layers[8].normalizer, model::Normalizer::none);
    EXPECT_TRUE(s.layers[8].bias);
    EXPECT_EQ(s.layers[0].activation, model::Activation::leaky_relu);
    EXPECT_FLOAT_EQ(s.layers[0].negative_slope, 0.2f);
    // The README's numbers: 257-pixel receptive field, 37,219 parameters,
    // 37.0 k multiply-accumulates per pixel.
    EXPECT_EQ(s.receptive_field(), 257);
    EXPECT_EQ(s.parameter_count(), 37219u);
    EXPECT_EQ(s.macs_per_pixel(), 3 * 3 * 3 * 24 + 7 * (3 * 3 * 24 * 24) + 24 * 3);
    EXPECT_NE(m.provenance().at("source_repo").find("FastImageProcessing"), std::string::npos);
  }
}

TEST(Model, ReadsTheParameterizedAndCombinedFiles) {
  const Model p = published("parameterized_L0_smoothing");
  EXPECT_EQ(p.spec().input_channels(), 4);
  ASSERT_EQ(p.spec().planes.size(), 1u);
  EXPECT_EQ(p.spec().receptive_field(), 513);
  EXPECT_EQ(p.spec().parameter_count(), 75285u);
  EXPECT_FALSE(p.spec().one_hot_operators);

  const Model c = published("combined");
  EXPECT_EQ(c.spec().input_channels(), 13);
  EXPECT_EQ(c.spec().parameter_count(), 77877u);
  EXPECT_TRUE(c.spec().one_hot_operators);
  const auto planes = c.operator_planes("Detail_manipulation");  // no CAN24 file of its own
  EXPECT_EQ(planes, (std::vector<float>{0, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_NE(test::error_of([&] { c.operator_planes("Sharpen"); }).find("valid: Nonlocal_dehazing, Dark_channel"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { p.operator_planes("L0_smoothing"); }).find("has no operator planes"), std::string::npos);
}

TEST(Model, ChecksPlaneCountsAndRanges) {
  const Model p = published("parameterized_L0_smoothing");
  EXPECT_EQ(test::error_of([&] { p.check_planes(std::vector<float>{0.5f}); }), "(no error)");
  EXPECT_NE(test::error_of([&] { p.check_planes({}); }).find("takes 1 constant plane (parameter), got 0"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { p.check_planes(std::vector<float>{1.5f}); }).find("out of range; valid: 0"),
            std::string::npos);
  const Model l0 = published("L0_smoothing");
  EXPECT_NE(test::error_of([&] { l0.check_planes(std::vector<float>{0.5f}); }).find("takes 0 constant planes, got 1"),
            std::string::npos);
}

TEST(Model, SavesAndLoadsBackTheSameNetwork) {
  const Model original = published("combined");
  const auto path = test::scratch_dir("model-roundtrip") / "combined.safetensors";
  original.save(path);
  const Model again = Model::load(path);
  EXPECT_EQ(again.spec().version, model::kSpecVersion);
  EXPECT_EQ(again.spec().architecture, "can32_an_combined");
  EXPECT_EQ(again.spec().channel_order, model::ChannelOrder::bgr);
  EXPECT_EQ(again.spec().quantisation, model::Quantisation::truncate);
  ASSERT_EQ(again.spec().planes.size(), 10u);
  EXPECT_EQ(again.spec().planes[3].name, "Detail_manipulation");
  EXPECT_TRUE(again.spec().one_hot_operators);
  ASSERT_EQ(again.spec().layers.size(), original.spec().layers.size());
  for (std::size_t i = 0; i < again.weights().size(); ++i) {
    EXPECT_EQ(again.spec().layers[i].dilation, original.spec().layers[i].dilation);
    EXPECT_EQ(again.weights()[i].kernel, original.weights()[i].kernel);
    EXPECT_EQ(again.weights()[i].beta, original.weights()[i].beta);
    EXPECT_EQ(again.weights()[i].w0, original.weights()[i].w0);
  }
  EXPECT_EQ(again.provenance().at("source_commit"), original.provenance().at("source_commit"));
  // A second save is byte-identical: the format has one spelling.
  EXPECT_EQ(again.encode(), original.encode());
}

std::string load_error(const std::vector<std::uint8_t>& bytes) {
  return test::error_of([&] { Model::parse(bytes, "bad.safetensors"); });
}

// A parameterized network whose plane carries l0_smooth's lambda, log-scaled.
Model mapped_parameterized(const std::string& planes_json) {
  const Model p = published("parameterized_L0_smoothing");
  auto metadata = p.provenance();
  for (auto& [k, v] : model::spec_metadata(p.spec())) metadata[k] = v;
  metadata["input_planes"] = planes_json;
  const auto original = SafeTensors::load(test::model_path("parameterized_L0_smoothing"));
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, info] : original.tensors()) {
    const auto raw = original.bytes(name);
    tensors[name] = Tensor{info.dtype, info.shape, std::vector<std::uint8_t>(raw.begin(), raw.end())};
  }
  return Model::parse(encode_safetensors(tensors, metadata), "mapped.safetensors");
}

TEST(Model, APlaneCarriesAParameterThroughItsRange) {
  const Model m = mapped_parameterized(
      R"([{"name":"parameter","min":0,"max":1,"param":"lambda","scale":"log","param_range":[0.002,0.2]}])");
  const model::InputPlane& plane = m.spec().planes[0];
  EXPECT_EQ(plane.param, "lambda");
  EXPECT_TRUE(plane.log_scale);
  EXPECT_FLOAT_EQ(m.planes_for("l0_smooth", {{"lambda", 0.002}})[0], 0.0f);
  EXPECT_NEAR(m.planes_for("l0_smooth", {{"lambda", 0.02}})[0], 0.5f, 1e-6);
  EXPECT_FLOAT_EQ(m.planes_for("l0_smooth", {{"lambda", 0.2}})[0], 1.0f);
  EXPECT_NE(test::error_of([&] { m.planes_for("l0_smooth", {{"lambda", 0.001}}); })
                .find("lambda = 0.001 is outside the range the network was trained on; valid: 0.002..0.2"),
            std::string::npos);
  // The mapping survives a save.
  const auto path = test::scratch_dir("model-mapped") / "m.safetensors";
  m.save(path);
  const Model again = Model::load(path);
  EXPECT_EQ(again.spec().planes[0].param, "lambda");
  EXPECT_DOUBLE_EQ(again.spec().planes[0].param_hi, 0.2);
  EXPECT_EQ(again.encode(), m.encode());
  // Linear: the range maps straight onto [min, max].
  const Model linear = mapped_parameterized(
      R"([{"name":"parameter","min":0,"max":1,"param":"sigma","scale":"linear","param_range":[10,50]}])");
  EXPECT_FLOAT_EQ(linear.planes_for("gaussian_noise", {{"sigma", 20}})[0], 0.25f);
  // A published plane carries no parameter: its values are given as they are.
  EXPECT_NE(test::error_of([&] { published("parameterized_L0_smoothing").planes_for("l0_smooth", {{"lambda", 0.1}}); })
                .find("carries no operator parameter"),
            std::string::npos);
  // Bad mappings are refused on load.
  const auto error = [](const std::string& planes) { return test::error_of([&] { mapped_parameterized(planes); }); };
  EXPECT_NE(error(R"([{"name":"p","param":"lambda","scale":"cubic","param_range":[1,2]}])").find("valid: linear, log"),
            std::string::npos);
  EXPECT_NE(error(R"([{"name":"p","param":"lambda","scale":"log","param_range":[0,2]}])").find("must be positive"),
            std::string::npos);
  EXPECT_NE(error(R"([{"name":"p","param":"lambda","param_range":[2,1]}])").find("lo < hi"), std::string::npos);
  EXPECT_NE(error(R"([{"name":"p","param":"lambda"}])").find("param_range must be [lo, hi]"), std::string::npos);
  EXPECT_NE(error(R"([{"name":"p","param":7,"param_range":[1,2]}])").find("wrong type"), std::string::npos);
}

nlohmann::json layers_of(const std::map<std::string, std::string>& metadata) {
  return nlohmann::json::parse(metadata.at("layers"));
}

TEST(Model, RefusesFilesThatAreNotModels) {
  using Meta = std::map<std::string, std::string>;
  using Tensors = std::map<std::string, Tensor>;
  EXPECT_EQ(load_error(test::altered_model([](Meta&, Tensors&) {})), "(no error)");
  // Truncated.
  auto bytes = read_file(test::data_path("models/L0_smoothing.safetensors"));
  bytes.resize(bytes.size() - 100);
  EXPECT_NE(load_error(bytes).find("cannot read safetensors 'bad.safetensors'"), std::string::npos);
  // Not a model at all: a safetensors file without a spec.
  EXPECT_NE(load_error(encode_safetensors({}, {})).find("not an opforge model"), std::string::npos);
  // Bad spec JSON.
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) { m["layers"] = "[{\"name\":"; })).find("'layers' is not valid JSON"),
            std::string::npos);
  // Layer shapes that do not chain.
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) {
              auto layers = layers_of(m);
              layers[3]["cin"] = 23;
              m["layers"] = layers.dump();
            })).find("layer 'g_conv4': takes 23 channels but receives 24"),
            std::string::npos);
  // Unknown normaliser or activation, even dilation, kernel.
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) {
              auto layers = layers_of(m);
              layers[0]["normalizer"] = "group_norm";
              m["layers"] = layers.dump();
            })).find("normalizer \"group_norm\" is not supported; valid: adaptive_bn, instance, none"),
            std::string::npos);
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) {
              auto layers = layers_of(m);
              layers[0]["kernel"] = {4, 4};
              m["layers"] = layers.dump();
            })).find("kernel sizes must be odd, 1..15"),
            std::string::npos);
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) {
              auto layers = layers_of(m);
              layers[1]["dilation"] = 0;
              m["layers"] = layers.dump();
            })).find("dilation 0 is invalid; valid: 1..4096"),
            std::string::npos);
  // Wrong dtype, wrong shape, a missing tensor, a non-finite weight.
  EXPECT_NE(load_error(test::altered_model([](Meta&, Tensors& t) {
              t["g_conv1/w0"] = Tensor::i64({}, std::vector<std::int64_t>{1});
            })).find("expected a floating-point dtype"),
            std::string::npos);
  EXPECT_NE(load_error(test::altered_model([](Meta&, Tensors& t) {
              t["g_conv_last/biases"] = Tensor::f32({4}, std::vector<float>{0, 0, 0, 0});
            })).find("tensor 'g_conv_last/biases' has shape [4] but the layer needs [3]"),
            std::string::npos);
  EXPECT_NE(load_error(test::altered_model([](Meta&, Tensors& t) { t.erase("g_conv5/BatchNorm/beta"); }))
                .find("tensor 'g_conv5/BatchNorm/beta' is missing"),
            std::string::npos);
  EXPECT_NE(load_error(test::altered_model([](Meta&, Tensors& t) {
              std::vector<float> w(3 * 3 * 3 * 24, 0.0f);
              w[7] = std::numeric_limits<float>::quiet_NaN();
              t["g_conv1/weights"] = Tensor::f32({3, 3, 3, 24}, w);
            })).find("layer 'g_conv1': weights holds a non-finite value at element 7"),
            std::string::npos);
  // A spec version from the future.
  EXPECT_NE(load_error(test::altered_model([](Meta& m, Tensors&) { m["opforge_spec_version"] = "7"; }))
                .find("spec version 7 is newer than this opforge reads (1)"),
            std::string::npos);
  // A last layer that does not give the image's channels.
  const Model good = published("L0_smoothing");
  auto spec = good.spec();
  spec.layers.pop_back();
  EXPECT_NE(test::error_of([&] { Model(spec, std::vector<model::LayerWeights>(good.weights().begin(), good.weights().end() - 1)); })
                .find("the last layer gives 24 channels but the image has 3"),
            std::string::npos);
}

TEST(Model, FloatSixteenWeightsLoadAsTheirFloatValues) {
  const Model original = published("L0_smoothing");
  const auto bytes = test::altered_model([&](std::map<std::string, std::string>&, std::map<std::string, Tensor>& t) {
    t["g_conv1/weights"] = Tensor::f16({3, 3, 3, 24}, original.weights()[0].kernel);
  });
  const Model half = Model::parse(bytes, "half");
  for (std::size_t i = 0; i < half.weights()[0].kernel.size(); ++i) {
    EXPECT_EQ(half.weights()[0].kernel[i], half_to_float(float_to_half(original.weights()[0].kernel[i])));
  }
}

TEST(Model, QuantisesAsTheModelSays) {
  const Model truncating = published("L0_smoothing");
  Image raw(1, 4, CV_32FC1);
  raw.at<float>(0, 0) = 0.9999f;     // 254.97 levels: truncates to 254
  raw.at<float>(0, 1) = -0.5f;       // clipped to 0
  raw.at<float>(0, 2) = 2.0f;        // clipped to 255
  raw.at<float>(0, 3) = 100.6f / 255;
  Image q = model::quantise(truncating, raw);
  EXPECT_FLOAT_EQ(q.at<float>(0, 0) * 255, 254);
  EXPECT_FLOAT_EQ(q.at<float>(0, 1), 0);
  EXPECT_FLOAT_EQ(q.at<float>(0, 2), 1);
  EXPECT_FLOAT_EQ(q.at<float>(0, 3) * 255, 100);
  // The 8-bit reader gives float32(v)/255 exactly as the authors' script
  // (float32(imread) / 255), for every level.
  for (int v = 0; v < 256; ++v) EXPECT_EQ(static_cast<float>(v / 255.0), static_cast<float>(v) / 255.0f) << v;
}

}  // namespace
}  // namespace opforge
