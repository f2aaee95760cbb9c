// The Vulkan executor against the CPU forward, on Mesa's lavapipe in CI.
// Every executor here runs under the Khronos validation layer, and each
// test fails on any message it reports.

#include "opforge/vk_runtime/vulkan_executor.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "model_fixtures.hpp"
#include "opforge/core/io.hpp"
#include "opforge/learner/network.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "random_models.hpp"
#include "reference_forward.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

using model::CpuExecutor;
using model::Model;
using vk::VulkanExecutor;
using vk::VulkanOptions;

VulkanOptions validated(VulkanOptions o = {}) {
  o.validation = true;
  o.cache_directory = "none";
  return o;
}

void expect_no_validation_messages(const VulkanExecutor& executor) {
  for (const auto& m : executor.validation_messages()) ADD_FAILURE() << "validation layer: " << m;
}

double max_abs(const cv::Mat& a, const cv::Mat& b) {
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(a.channels(), b.channels());
  if (a.size() != b.size() || a.channels() != b.channels()) return 1e30;
  return cv::norm(a, b, cv::NORM_INF);
}

TEST(VulkanDevices, AreListedInPreferenceOrder) {
  const auto devices = vk::list_devices();
  ASSERT_FALSE(devices.empty());
  for (std::size_t i = 0; i < devices.size(); ++i) {
    EXPECT_EQ(devices[i].index, int(i));
    EXPECT_FALSE(devices[i].name.empty());
    if (i > 0) {
      EXPECT_LE(int(devices[i - 1].kind), int(devices[i].kind)) << "discrete, integrated, virtual, then CPU";
    }
  }
  VulkanExecutor executor(validated());
  EXPECT_EQ(executor.device().index, 0);
  EXPECT_NE(executor.name().find(devices[0].name), std::string::npos);
  EXPECT_GT(executor.budget_bytes(), 0);
  expect_no_validation_messages(executor);
}

TEST(VulkanDevices, AnUnknownIndexIsOneLine) {
  const auto devices = vk::list_devices();
  VulkanOptions o = validated();
  o.device_index = int(devices.size());
  const std::string message = test::error_of([&] { VulkanExecutor executor(o); });
  EXPECT_NE(message.find("--device-index " + std::to_string(devices.size()) + " is out of range: valid 0.."), std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

// Each layer kind on its own (followed by a plain 1×1 back to 3 channels):
// the naive float64 forward, the optimised CPU forward and Vulkan in both
// precisions on random inputs. Stated epsilons: 1e-4 for float32 (CPU and
// Vulkan), 2e-2 for fp16 storage.
TEST(VulkanExecutor, EveryLayerKindMatchesTheNaiveForwardInBothPrecisions) {
  using model::Activation;
  using model::Normalizer;
  struct Case {
    std::string name;
    std::vector<model::LayerSpec> layers;  // before the closing 1×1
  };
  const auto with = [](model::LayerSpec l, auto change) {
    change(l);
    return l;
  };
  std::vector<Case> cases;
  for (int w : {5, 24, 40}) {
    const std::string width = " width " + std::to_string(w);
    cases.push_back({"3x3 bias leaky" + width, {test::conv("l", 3, 3, w, 1, false, true)}});
    cases.push_back({"3x3 dilation 4 adaptive bn" + width, {test::conv("l", 3, 3, w, 4, true)}});
    cases.push_back({"3x3 dilation 32 adaptive bn" + width, {test::conv("l", 3, 3, w, 32, true)}});
    cases.push_back({"1x1 relu" + width, {test::conv("l", 1, 3, w, 1, false, true, Activation::relu)}});
    cases.push_back({"5x5 dilation 2 linear" + width, {test::conv("l", 5, 3, w, 2, false, false, Activation::none)}});
    cases.push_back({"7x7 instance norm relu" + width, {with(test::conv("l", 7, 3, w, 1, false, false, Activation::relu), [](auto& l) {
                       l.normalizer = Normalizer::instance;
                     })}});
    cases.push_back({"stride 2 then transposed 4x4" + width,
                     {with(test::conv("down", 3, 3, w, 1, false, true), [](auto& l) { l.stride = 2; }),
                      with(test::conv("up", 3, w, w, 1, false, true, Activation::relu), [](auto& l) {
                        l.kernel_h = l.kernel_w = 4;
                        l.stride = 2;
                        l.transposed = true;
                      })}});
    cases.push_back({"residual of its own input" + width,
                     {test::conv("a", 3, 3, w, 1, false), with(test::conv("b", 3, w, w, 2, false), [](auto& l) {
                        l.normalizer = Normalizer::instance;
                        l.residual_from = "b";
                      })}});
  }
  VulkanExecutor full(validated());
  VulkanOptions half_options = validated();
  half_options.fp16_storage = true;
  VulkanExecutor half(half_options);
  unsigned seed = 1;
  for (auto& c : cases) {
    auto layers = c.layers;
    layers.push_back(test::conv("last", 1, layers.back().cout, 3, 1, false, true, Activation::none));
    const Model m = test::random_model(layers, 3, 0, seed++);
    for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{1, 1}, {7, 5}, {33, 47}}) {
      SCOPED_TRACE(c.name + ", " + std::to_string(rows) + "x" + std::to_string(cols));
      const cv::Mat input = test::random_input(rows, cols, 3, seed++);
      const auto naive = test::reference_forward(m, test::planes_from<double>(input));
      const cv::Mat reference(rows, cols, CV_64FC3, const_cast<double*>(naive.values.data()));
      cv::Mat reference32;
      reference.convertTo(reference32, CV_32F);
      EXPECT_LE(max_abs(CpuExecutor().forward(m, input), reference32), 1e-4);
      EXPECT_LE(max_abs(full.forward(m, input), reference32), 1e-4);
      EXPECT_LE(max_abs(half.forward(m, input), reference32), 2e-2);
    }
  }
  expect_no_validation_messages(full);
  expect_no_validation_messages(half);
}

// Vulkan against the CPU forward, ≤ 1e-4, for each width's random model at each size.
template <typename MakeModel>
void expect_matches_cpu_at_sizes(VulkanExecutor& executor, std::initializer_list<int> widths, MakeModel make_model,
                                 const std::vector<std::pair<int, int>>& sizes, int row_seed) {
  for (int width : widths) {
    const Model m = make_model(width);
    for (const auto& [rows, cols] : sizes) {
      SCOPED_TRACE("width " + std::to_string(width) + ", " + std::to_string(rows) + "x" + std::to_string(cols));
      const cv::Mat input = test::random_input(rows, cols, m.spec().input_channels(), rows * row_seed + cols);
      EXPECT_LE(max_abs(executor.forward(m, input), CpuExecutor().forward(m, input)), 1e-4);
    }
  }
  expect_no_validation_messages(executor);
}

TEST(VulkanExecutor, MatchesTheCpuForwardOnRandomNetworksAndOddSizes) {
  VulkanExecutor executor(validated());
  expect_matches_cpu_at_sizes(
      executor, {3, 8, 24, 32}, [](int width) { return test::mixed_model(width, 100 + width); },
      {{1, 1}, {2, 3}, {3, 517}, {37, 29}, {70, 5}}, 1000);
}

TEST(VulkanExecutor, RunsStridesTransposedLayersInstanceNormsAndResidualsAsTheCpu) {
  VulkanExecutor executor(validated());
  expect_matches_cpu_at_sizes(
      executor, {8, 24}, [](int width) { return test::fan_shaped_model(width, 300 + width); },
      {{1, 1}, {2, 3}, {5, 7}, {16, 16}, {37, 29}, {3, 70}}, 100);
}

// The conv shader's variants: pixels per invocation (the default, 4, runs
// in every other test) and input channels per load (4 is the GPU default;
// lavapipe's is 1), in both precisions, with images whose widths leave
// partial workgroups and invocations whose last pixels lie past the row.
TEST(VulkanExecutor, EveryConvShaderVariantMatchesTheCpuForward) {
  const std::vector<std::pair<int, int>> sizes{{1, 1}, {3, 517}, {37, 29}, {5, 70}};
  for (const bool vector_loads : {false, true}) {
    // Four pixels and one channel per load run in every other test.
    for (int pixels : vector_loads ? std::vector<int>{4} : std::vector<int>{1, 2, 3}) {
      SCOPED_TRACE(std::to_string(pixels) + " pixel(s) per invocation, " + (vector_loads ? "4" : "1") + " channel(s) per load");
      VulkanOptions o = validated();
      o.conv_pixels = pixels;
      o.conv_vector_loads = vector_loads;
      VulkanExecutor executor(o);
      EXPECT_EQ(executor.device().conv_pixels, pixels);
      EXPECT_EQ(executor.device().conv_vector_loads, vector_loads);
      expect_matches_cpu_at_sizes(executor, {3, 24}, [](int width) { return test::mixed_model(width, 700 + width); }, sizes, 10);
      expect_matches_cpu_at_sizes(executor, {8}, [](int width) { return test::fan_shaped_model(width, 800 + width); }, sizes, 20);
    }
  }
  VulkanOptions half_options = validated();
  half_options.fp16_storage = true;
  half_options.conv_vector_loads = true;
  VulkanExecutor half(half_options);
  for (int width : {8, 24}) {
    for (const Model& m : {test::mixed_model(width, 710 + width), test::fan_shaped_model(width, 810 + width)}) {
      const cv::Mat input = test::random_input(37, 29, m.spec().input_channels(), 30 + width);
      EXPECT_LE(max_abs(half.forward(m, input), CpuExecutor().forward(m, input)), 2e-2);
    }
  }
  expect_no_validation_messages(half);
  for (int pixels : {0, 5}) {
    VulkanOptions o = validated();
    o.conv_pixels = pixels;
    const std::string message = test::error_of([&] { VulkanExecutor executor(o); });
    EXPECT_NE(message.find("conv pixels per invocation " + std::to_string(pixels) + " is out of range: valid 1..4"), std::string::npos)
        << message;
  }
}

// A second frame of the same size uploads nothing and allocates nothing;
// other weights of the same shape, another size and a smaller image after a
// larger one still give the CPU's result.
TEST(VulkanExecutor, KeepsWeightsAndBuffersForTheNextPassOnlyWhileTheyStillFit) {
  VulkanExecutor executor(validated());
  const Model a = test::mixed_model(24, 901), b = test::mixed_model(24, 902);
  const auto expect_cpu = [&](const Model& m, int rows, int cols) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    const cv::Mat input = test::random_input(rows, cols, m.spec().input_channels(), rows + cols);
    EXPECT_LE(max_abs(executor.forward(m, input), CpuExecutor().forward(m, input)), 1e-4);
  };
  expect_cpu(a, 40, 30);
  EXPECT_TRUE(executor.last_run().weights_uploaded);
  EXPECT_GT(executor.last_run().allocations, 0);
  expect_cpu(a, 40, 30);
  EXPECT_FALSE(executor.last_run().weights_uploaded);
  EXPECT_EQ(executor.last_run().allocations, 0);
  expect_cpu(b, 40, 30);
  EXPECT_TRUE(executor.last_run().weights_uploaded) << "same shapes, other weights";
  EXPECT_EQ(executor.last_run().allocations, 0);
  expect_cpu(b, 90, 61);
  EXPECT_GT(executor.last_run().allocations, 0);
  expect_cpu(a, 7, 5);
  expect_cpu(a, 40, 30);
  expect_no_validation_messages(executor);
}

// The buffers kept from one pass make way: for a pass in parts (a larger
// image than the budget holds), and for another pass's sizes when the
// device refuses more memory than the last pass held.
TEST(VulkanExecutor, KeptBuffersMakeWayForPartsAndForOtherSizes) {
  const Model m = test::mixed_model(24, 960);
  const cv::Mat small_input = test::random_input(40, 30, m.spec().input_channels(), 961);
  const cv::Mat large_input = test::random_input(301, 203, m.spec().input_channels(), 962);
  const auto expect_cpu = [&](VulkanExecutor& executor, const cv::Mat& input) {
    EXPECT_LE(max_abs(executor.forward(m, input), CpuExecutor().forward(m, input)), 1e-4);
  };
  VulkanExecutor probe(validated());
  const double small_pass = probe.resident_bytes(m.spec(), small_input.rows, small_input.cols);
  const double large_pass = probe.resident_bytes(m.spec(), large_input.rows, large_input.cols);
  ASSERT_GT(large_pass, 4 * small_pass);

  VulkanOptions budgeted = validated();
  budgeted.budget_bytes = large_pass / 4;
  budgeted.allocation_limit_bytes = budgeted.budget_bytes;  // and the device holds no more
  VulkanExecutor executor(budgeted);
  for (const cv::Mat* input : {&small_input, &large_input, &small_input}) {
    SCOPED_TRACE(std::to_string(input->cols) + "x" + std::to_string(input->rows));
    expect_cpu(executor, *input);
    EXPECT_EQ(executor.last_run().parts, input == &large_input);
    EXPECT_EQ(executor.last_run().retries, 0) << "the kept buffers were in the way";
  }
  expect_no_validation_messages(executor);

  // The budget claims room for anything; the device holds one large pass.
  VulkanOptions refusing = validated();
  refusing.allocation_limit_bytes = 1.05 * large_pass;
  VulkanExecutor tight(refusing);
  for (const cv::Mat* input : {&large_input, &small_input, &large_input}) {
    SCOPED_TRACE(std::to_string(input->cols) + "x" + std::to_string(input->rows));
    expect_cpu(tight, *input);
    EXPECT_FALSE(tight.last_run().parts);
  }
  expect_no_validation_messages(tight);
}

// The statistics where float sums are weakest: wide rows of values far
// from zero with a small spread (the variance is E[y²] − E[y]², a
// difference of two large numbers), 1 to 64 channels, both normalisers.
TEST(VulkanExecutor, NormalisesWideRowsOfLargeOffsetValuesAsTheCpu) {
  VulkanExecutor executor(validated());
  for (const model::Normalizer normalizer : {model::Normalizer::instance, model::Normalizer::adaptive_bn}) {
    for (int channels : {1, 3, 24, 64}) {
      SCOPED_TRACE(std::to_string(channels) + " channel(s)");
      model::LayerSpec offset = test::conv("offset", 1, 3, channels, 1, false, true, model::Activation::none);
      model::LayerSpec norm = test::conv("norm", 3, channels, channels, 1, false, false, model::Activation::none);
      norm.normalizer = normalizer;
      Model m = test::random_model({offset, norm, test::conv("last", 1, channels, 3, 1, false, true, model::Activation::none)}, 3, 0,
                                   970 + channels);
      auto weights = m.weights();
      for (float& b : weights[0].bias) b += 30.0f;  // values ~30 ± 0.5
      m = Model(m.spec(), weights, "offset");
      const cv::Mat input = test::random_input(3, 3840, 3, 971);
      const cv::Mat cpu = CpuExecutor().forward(m, input);
      EXPECT_LE(max_abs(executor.forward(m, input), cpu), 1e-4);  // measured ≤ 4.6e-5, at outputs up to 95
    }
  }
  expect_no_validation_messages(executor);
}

// Profiling times every layer on the device's clock and changes nothing.
TEST(VulkanExecutor, ProfilingTimesEachLayerAndLeavesTheResultAlone) {
  VulkanOptions o = validated();
  o.profile = true;
  VulkanExecutor profiled(o);
  VulkanExecutor plain(validated());
  const Model m = test::fan_shaped_model(8, 950);
  const cv::Mat input = test::random_input(37, 29, m.spec().input_channels(), 951);
  EXPECT_EQ(max_abs(profiled.forward(m, input), plain.forward(m, input)), 0.0);
  EXPECT_TRUE(plain.last_run().layers.empty());
  const auto& run = profiled.last_run();
  ASSERT_EQ(run.layers.size(), m.spec().layers.size());
  double sum = 0;
  for (std::size_t i = 0; i < run.layers.size(); ++i) {
    SCOPED_TRACE(run.layers[i].name);
    EXPECT_EQ(run.layers[i].name, m.spec().layers[i].name);
    EXPECT_GT(run.layers[i].conv_ms, 0.0);
    EXPECT_GE(run.layers[i].epilogue_ms, 0.0);
    EXPECT_GE(run.layers[i].host_ms, 0.0);
    sum += run.layers[i].conv_ms + run.layers[i].epilogue_ms + run.layers[i].host_ms;
  }
  EXPECT_GT(run.device_ms, 0.0);
  EXPECT_LE(sum, run.device_ms + 1e-3);
  expect_no_validation_messages(profiled);
  expect_no_validation_messages(plain);
}

TEST(VulkanExecutor, EveryPublishedModelMatchesTheCpuForward) {
  // A 96x128 crop of a test photo: every layer's dilation reaches past it.
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  const Image crop = photo(cv::Rect(700, 500, 128, 96)).clone();
  VulkanExecutor executor(validated());
  for (const std::string& name : test::kPublishedModels) {
    SCOPED_TRACE(name);
    const Model m = Model::load(test::model_path(name));
    const std::vector<float> planes = test::published_test_planes(name, m);
    const Image vulkan = executor.run(m, crop, planes);
    const Image cpu = CpuExecutor().run(m, crop, planes);
    EXPECT_LE(max_abs(vulkan, cpu), 1e-4);
  }
  expect_no_validation_messages(executor);
}

TEST(VulkanExecutor, EveryNetworkTheLearnerTrainsMatchesTheCpuForward) {
  model::InputPlane lambda;
  lambda.name = "lambda";
  lambda.param = "lambda";
  lambda.log_scale = true;
  lambda.param_lo = 0.002;
  lambda.param_hi = 0.2;
  struct Case {
    std::string name;
    model::NetworkSpec spec;
    std::vector<float> planes;
  };
  const std::vector<Case> cases = {
      {"can24_an", learner::network_spec("can24_an"), {}},
      {"can32_an_parameterized", learner::network_spec("can32_an_parameterized"), {0.3f}},
      {"can32_an_combined", learner::network_spec("can32_an_combined", {"l0_smooth", "wls_smooth"}), {0.25f, 0.75f}},
      {"srcnn_915", learner::network_spec("srcnn_915"), {}},
      {"fan_decoupled", learner::fan_spec("fan_decoupled", {lambda}, 16), {0.7f}},
      {"fan_cheap_tuning", learner::fan_spec("fan_cheap_tuning", {lambda}, 16), {0.2f}},
  };
  VulkanExecutor executor(validated());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Model m = learner::uniform_initialised(c.spec, 42);
    const Image input(37, 45, CV_32FC(c.spec.image_channels));
    cv::RNG(7).fill(input, cv::RNG::UNIFORM, 0.0, 1.0);
    const Image vulkan = executor.run(m, input, c.planes);
    const Image cpu = CpuExecutor().run(m, input, c.planes);
    // Fan et al.'s outputs are in [0, 255] inside the network: 1e-4 of a level.
    EXPECT_LE(max_abs(vulkan, cpu), 1e-4);
  }
  expect_no_validation_messages(executor);
}

TEST(VulkanExecutor, CheapTuningRerunsOnlyTheLayersAfterTheAdjustableOne) {
  model::InputPlane lambda;
  lambda.name = "lambda";
  lambda.param = "lambda";
  lambda.param_lo = 0.002;
  lambda.param_hi = 0.2;
  // Trained-looking: the adjustable scale and shift do depend on p.
  const Model initial = learner::uniform_initialised(learner::fan_spec("fan_cheap_tuning", {lambda}, 16), 3);
  std::vector<model::LayerWeights> weights = initial.weights();
  for (auto& w : weights) {
    for (std::size_t j = 0; j < w.gamma_from_params.size(); ++j) w.gamma_from_params[j] = 0.5f * std::sin(float(j));
    for (std::size_t j = 0; j < w.beta_from_params.size(); ++j) w.beta_from_params[j] = 0.5f * std::cos(float(j));
  }
  const Model cheap(initial.spec(), weights, "cheap tuning");
  const Model decoupled = learner::uniform_initialised(learner::fan_spec("fan_decoupled", {lambda}, 16), 3);
  const std::size_t k = VulkanExecutor::rerun_from(cheap.spec());
  ASSERT_GT(k, 0u);
  EXPECT_EQ(cheap.spec().layers[k].generated, model::Generated::norm);  // the adjustable layer itself reruns
  for (std::size_t i = 0; i < k; ++i) EXPECT_EQ(cheap.spec().layers[i].generated, model::Generated::none);
  EXPECT_EQ(VulkanExecutor::rerun_from(decoupled.spec()), 0u);  // every kernel depends on p
  EXPECT_EQ(VulkanExecutor::rerun_from(learner::network_spec("can32_an_parameterized")), 0u);  // p is an input plane

  Image input(61, 83, CV_32FC3);
  cv::RNG(5).fill(input, cv::RNG::UNIFORM, 0.0, 1.0);
  const std::vector<std::vector<float>> sets = {{0.01f}, {0.05f}, {0.1f}, {0.2f}};
  VulkanExecutor executor(validated());
  const std::vector<Image> swept = executor.run_planes(cheap, input, sets);
  ASSERT_EQ(swept.size(), sets.size());
  for (std::size_t s = 0; s < sets.size(); ++s) {
    SCOPED_TRACE(s);
    EXPECT_LE(max_abs(swept[s], executor.run(cheap, input, sets[s])), 1e-6);
    EXPECT_LE(max_abs(swept[s], CpuExecutor().run(cheap, input, sets[s])), 1e-4);
  }
  EXPECT_GT(max_abs(swept[0], swept[3]), 1e-5);  // the parameter does change the output
  const std::vector<Image> decoupled_swept = executor.run_planes(decoupled, input, sets);
  EXPECT_LE(max_abs(decoupled_swept[1], executor.run(decoupled, input, sets[1])), 1e-6);
  expect_no_validation_messages(executor);
}

TEST(VulkanExecutor, ReproducesThePublishedCan24L0Output) {
  // The authors' published result for MIT-Adobe 000001 (1080x1627, portrait): at most
  // one level off anywhere, and at least 99.9% of values equal.
  const Model m = Model::load(test::data_path("models/L0_smoothing.safetensors"));
  const Image input = read_image(test::data_path("can24/000001_input.png"));
  const Image published = read_image(test::data_path("can24/000001_L0_smoothing_published.png"));
  VulkanExecutor executor(validated());
  const Image ours = model::quantise(m, executor.run(m, input));
  ASSERT_EQ(ours.size(), published.size());
  const auto c = test::compare_levels(ours, published);
  EXPECT_LE(c.worst, 1);
  EXPECT_GE(c.equal_fraction, 0.999);
  RecordProperty("values_equal_percent", std::to_string(100.0 * c.equal_fraction));
  expect_no_validation_messages(executor);
}

// fp16 storage: activations rounded to half precision between layers
// (arithmetic in float32). Stated bounds: max-abs 2e-2 on random networks
// (values of order 1 through seven layers; 7.6e-3 measured), and on the
// published models at least 55 dB PSNR against the CPU's float32 output
// with at most 1 level off in 8 bits (58.8 dB and 1 level measured).
TEST(VulkanExecutor, Fp16StorageStaysWithinItsStatedErrorOfTheCpuForward) {
  VulkanOptions o = validated();
  o.fp16_storage = true;
  VulkanExecutor executor(o);
  EXPECT_NE(executor.name().find("fp16"), std::string::npos);
  double worst_random = 0;
  for (int width : {8, 24, 32}) {
    const Model can = test::mixed_model(width, 100 + width);
    const Model fan = test::fan_shaped_model(width, 300 + width);
    for (const Model* m : {&can, &fan}) {
      const cv::Mat input = test::random_input(37, 29, m->spec().input_channels(), width);
      worst_random = std::max(worst_random, max_abs(executor.forward(*m, input), CpuExecutor().forward(*m, input)));
    }
  }
  EXPECT_LE(worst_random, 2e-2);
  RecordProperty("random_networks_max_abs", std::to_string(worst_random));
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  const Image crop = photo(cv::Rect(600, 400, 192, 128)).clone();
  double worst_psnr = 1e9;
  long worst_levels = 0;
  for (const std::string& name : test::kPublishedModels) {
    SCOPED_TRACE(name);
    const Model m = Model::load(test::model_path(name));
    const std::vector<float> planes = test::published_test_planes(name, m);
    const Image half = model::quantise(m, executor.run(m, crop, planes));
    const Image full = model::quantise(m, CpuExecutor().run(m, crop, planes));
    const double mse = cv::norm(half, full, cv::NORM_L2SQR) / double(half.total() * half.channels());
    const double psnr = mse == 0 ? 99.0 : 10 * std::log10(1.0 / mse);
    const auto c = test::compare_levels(half, full);
    EXPECT_GE(psnr, 55.0);
    EXPECT_LE(c.worst, 1);
    worst_psnr = std::min(worst_psnr, psnr);
    worst_levels = std::max(worst_levels, c.worst);
    std::printf("fp16 %-30s psnr %.2f dB, worst %ld level(s), %.3f%% equal\n", name.c_str(), psnr, c.worst, 100 * c.equal_fraction);
  }
  RecordProperty("published_worst_psnr_db", std::to_string(worst_psnr));
  RecordProperty("published_worst_levels", std::to_string(worst_levels));
  // In parts too: the same rounding, so the same result.
  const Model m = test::mixed_model(24, 5);
  const cv::Mat input = test::random_input(301, 203, m.spec().input_channels(), 9);
  const cv::Mat whole = executor.forward(m, input);
  VulkanOptions small = o;
  small.budget_bytes = executor.resident_bytes(m.spec(), input.rows, input.cols) / 4;
  VulkanExecutor parts(small);
  EXPECT_LE(max_abs(parts.forward(m, input), whole), 1e-6);
  EXPECT_TRUE(parts.last_run().parts);
  expect_no_validation_messages(executor);
  expect_no_validation_messages(parts);
}

TEST(VulkanExecutor, RunsInPartsWhenTheBudgetIsSmallAndGivesTheSameResult) {
  const Model can = test::mixed_model(24, 5);
  const Model fan = test::fan_shaped_model(24, 6);
  for (const Model* m : {&can, &fan}) {
    const cv::Mat input = test::random_input(301, 203, m->spec().input_channels(), 9);
    VulkanExecutor whole(validated());
    const cv::Mat reference = whole.forward(*m, input);
    EXPECT_FALSE(whole.last_run().parts);
    VulkanOptions o = validated();
    o.budget_bytes = whole.resident_bytes(m->spec(), input.rows, input.cols) / 4;  // a quarter of one pass
    VulkanExecutor small(o);
    const cv::Mat parts = small.forward(*m, input);
    EXPECT_TRUE(small.last_run().parts);
    EXPECT_LT(small.last_run().band_rows, input.rows);
    EXPECT_LE(small.last_run().device_bytes, *o.budget_bytes);
    EXPECT_LE(max_abs(parts, reference), 1e-6);
    EXPECT_LE(max_abs(parts, CpuExecutor().forward(*m, input)), 1e-4);
    expect_no_validation_messages(whole);
    expect_no_validation_messages(small);
  }
}

TEST(VulkanExecutor, RecoversFromRefusedAllocationsWithSmallerParts) {
  // The budget says everything fits; the device then refuses: the pass is
  // retried in parts, smaller each time, and still gives the same result.
  const Model m = test::mixed_model(32, 8);
  const cv::Mat input = test::random_input(257, 190, m.spec().input_channels(), 4);
  VulkanExecutor whole(validated());
  const cv::Mat reference = whole.forward(m, input);
  VulkanOptions o = validated();
  o.allocation_limit_bytes = whole.resident_bytes(m.spec(), input.rows, input.cols) / 3;
  VulkanExecutor refusing(o);
  const cv::Mat out = refusing.forward(m, input);
  EXPECT_TRUE(refusing.last_run().parts);
  EXPECT_GE(refusing.last_run().retries, 1);
  EXPECT_LE(max_abs(out, reference), 1e-6);
  expect_no_validation_messages(whole);
  expect_no_validation_messages(refusing);
}

TEST(VulkanExecutor, ABudgetBelowOneRowIsOneLineAndNoOutput) {
  const Model m = test::mixed_model(32, 8);
  const cv::Mat input = test::random_input(64, 500, m.spec().input_channels(), 4);
  VulkanOptions o = validated();
  o.allocation_limit_bytes = 200 * 1024;  // the weights fit, no band of rows does
  VulkanExecutor executor(o);
  cv::Mat out;
  const std::string message = test::error_of([&] { out = executor.forward(m, input); });
  EXPECT_NE(message.find("not enough device memory"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_TRUE(out.empty());
  expect_no_validation_messages(executor);
}

TEST(VulkanExecutor, PipelineCacheIsWrittenAndACorruptOneIsIgnored) {
  const auto dir = test::scratch_dir("vulkan-pipeline-cache");
  const Model m = test::mixed_model(8, 2);
  const cv::Mat input = test::random_input(9, 11, m.spec().input_channels(), 1);
  VulkanOptions o = validated();
  o.cache_directory = dir / "cache";
  cv::Mat first;
  {
    VulkanExecutor executor(o);
    first = executor.forward(m, input);
    expect_no_validation_messages(executor);
  }
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(o.cache_directory)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].filename().string().find("vulkan-pipelines-"), std::string::npos);
  // Vulkan's cache header: its length (32), version one, then vendor, device, UUID.
  const auto header = [&] {
    std::ifstream in(files[0], std::ios::binary);
    std::uint32_t words[2] = {0, 0};
    in.read(reinterpret_cast<char*>(words), sizeof words);
    return std::pair<std::uint32_t, std::uint32_t>(words[0], words[1]);
  };
  EXPECT_EQ(header(), std::make_pair(32u, 1u));
  for (const std::string& garbage : {std::string("not a cache"), std::string(4096, '\x01')}) {
    std::ofstream(files[0], std::ios::binary | std::ios::trunc) << garbage;
    VulkanExecutor executor(o);
    EXPECT_EQ(max_abs(executor.forward(m, input), first), 0.0);
    expect_no_validation_messages(executor);
    EXPECT_EQ(header(), std::make_pair(32u, 1u));  // rewritten
  }
  std::size_t left = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(o.cache_directory)) ++left;
  EXPECT_EQ(left, 1u);  // no temporary left behind
}

TEST(VulkanExecutor, RefusesInputItCannotRun) {
  const Model m = Model::load(test::data_path("models/L0_smoothing.safetensors"));
  VulkanExecutor executor(validated());
  EXPECT_NE(test::error_of([&] { executor.forward(m, cv::Mat(4, 4, CV_32FC(4), cv::Scalar::all(0))); })
                .find("takes 3-channel float32 input, got 4"),
            std::string::npos);
  expect_no_validation_messages(executor);
}

}  // namespace
}  // namespace opforge
