// `opforge infer` and `opforge model info`: the published results through the
// command line, every published model against the float64 reference, and one
// line with exit status 2 (nothing written) for every kind of bad model or
// bad request.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/safetensors.hpp"
#include "opforge/model/model.hpp"
#include "model_fixtures.hpp"
#include "reference_forward.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::Result;
using test::run;

using test::model_path;

void expect_one_line(const std::string& label, const Result& r, const std::string& part) {
  EXPECT_EQ(r.status, 2) << label << ": " << r.err;
  EXPECT_EQ(r.err_lines(), 1) << label << ": " << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << label << ": '" << part << "' not in: " << r.err;
}

TEST(InferCli, ReproducesThePublishedCan24L0ResultFromAnRgbPng) {
  const fs::path dir = test::scratch_dir("infer-published");
  const fs::path out = dir / "000001.png";
  const Result r = run({"infer", model_path("L0_smoothing"), test::data_path("can24/000001_input.png").string(),
                        out.string(), "--threads", "2"},
                       dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const Image ours = read_image(out);
  const Image published = read_image(test::data_path("can24/000001_L0_smoothing_published.png"));
  ASSERT_EQ(ours.size(), published.size());
  const auto c = test::compare_levels(ours, published);
  EXPECT_LE(c.worst, 1);                 // at most one level off anywhere
  EXPECT_GE(c.equal_fraction, 0.999);   // and at least 99.9% of values equal
}

TEST(InferCli, RunsEveryPublishedModelAsTheFloat64ReferenceDoes) {
  const fs::path dir = test::scratch_dir("infer-all-models");
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  const Image crop = photo(cv::Rect(300, 900, 80, 64)).clone();
  write_image(dir / "crop.npy", crop);
  for (const std::string& name : test::kPublishedModels) {
    SCOPED_TRACE(name);
    const model::Model m = model::Model::load(model_path(name));
    std::vector<std::string> args = {"infer", model_path(name), (dir / "crop.npy").string(), (dir / "out.npy").string()};
    std::vector<float> planes;
    if (name == "parameterized_L0_smoothing") {
      args.insert(args.end(), {"--planes", "0.5"});
      planes = {0.5f};
    }
    if (name == "combined") {
      args.insert(args.end(), {"--operator", "Detail_manipulation"});
      planes = m.operator_planes("Detail_manipulation");
    }
    const Result r = run(args, dir);
    ASSERT_EQ(r.status, 0) << r.err;
    const Image out = read_image(dir / "out.npy");  // raw RGB output, before quantisation
    const auto ref = test::reference_forward(m, test::planes_from<double>(model::network_input(m, crop, planes)));
    // The reference is in the model's BGR order; the file is RGB.
    double worst = 0;
    for (int y = 0; y < out.rows; ++y) {
      for (int x = 0; x < out.cols; ++x) {
        for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(out.at<cv::Vec3f>(y, x)[c] - ref.at(y, x, 2 - c)));
      }
    }
    EXPECT_LE(worst, 1e-5);
  }
}

TEST(InferCli, ResultsDoNotDependOnThreads) {
  const fs::path dir = test::scratch_dir("infer-threads");
  const std::string in = (dir / "in.png").string();
  write_image(in, read_image(test::data_path("samples/mit_adobe_000003_1024.jpg"))(cv::Rect(100, 200, 301, 203)));
  ASSERT_EQ(run({"infer", model_path("Pencil_drawing"), in, (dir / "one.npy").string(), "--threads", "1"}, dir).status, 0);
  ASSERT_EQ(run({"infer", model_path("Pencil_drawing"), in, (dir / "two.npy").string(), "--threads=2"}, dir).status, 0);
  EXPECT_EQ(read_file(dir / "one.npy"), read_file(dir / "two.npy"));
}

TEST(InferCli, RunsADirectoryAndCarriesOnPastFailures) {
  const fs::path dir = test::scratch_dir("infer-directory");
  fs::create_directories(dir / "in");
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  write_image(dir / "in" / "a.png", photo(cv::Rect(0, 0, 64, 48)));
  write_image(dir / "in" / "c.npy", photo(cv::Rect(64, 0, 33, 17)));
  std::ofstream(dir / "in" / "b.png") << "not an image";
  std::ofstream(dir / "in" / "notes.txt") << "ignored";
  const Result r = run({"infer", model_path("TV_L1"), (dir / "in").string(), (dir / "out").string()}, dir);
  EXPECT_EQ(r.status, 2) << r.err;  // one image failed
  EXPECT_EQ(r.err_lines(), 1) << r.err;
  EXPECT_NE(r.err.find("b.png"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("3 image(s), 2 written, 1 failed"), std::string::npos) << r.out;
  EXPECT_EQ(read_image(dir / "out" / "a.png").size(), cv::Size(64, 48));
  EXPECT_EQ(read_image(dir / "out" / "c.png").size(), cv::Size(33, 17));
  EXPECT_FALSE(fs::exists(dir / "out" / "b.png"));
  // Two inputs that would write the same output are refused before any work.
  write_image(dir / "in" / "a.jpg", photo(cv::Rect(0, 0, 8, 8)));
  expect_one_line("clash", run({"infer", model_path("TV_L1"), (dir / "in").string(), (dir / "out2").string()}, dir),
                  "would both write");
  EXPECT_FALSE(fs::exists(dir / "out2"));
}

// An altered copy of the published L0 file, written to `dir`.
fs::path altered_model(const fs::path& dir, const std::string& name, const test::MetadataEdit& change) {
  const fs::path path = dir / (name + ".safetensors");
  write_file_atomic(path, test::altered_model(change));
  return path;
}

TEST(InferCli, RefusesBadModelsAndRequestsWithOneLine) {
  const fs::path dir = test::scratch_dir("infer-bad");
  const std::string in = test::data_path("samples/mit_adobe_000003_1024.jpg").string();
  const std::string out = (dir / "out.png").string();
  using Meta = std::map<std::string, std::string>;
  using Tensors = std::map<std::string, Tensor>;
  auto bytes = read_file(model_path("L0_smoothing"));
  bytes.resize(bytes.size() / 2);
  write_file_atomic(dir / "truncated.safetensors", bytes);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"infer", (dir / "truncated.safetensors").string(), in, out}, "cannot read safetensors"},
      {{"infer", altered_model(dir, "dtype", [](Meta&, Tensors& t) { t["g_conv1/w1"] = Tensor::i64({}, std::vector<std::int64_t>{0}); }).string(), in, out},
       "expected a floating-point dtype"},
      {{"infer", altered_model(dir, "json", [](Meta& m, Tensors&) { m["layers"] = "{]"; }).string(), in, out},
       "'layers' is not valid JSON"},
      {{"infer", altered_model(dir, "chain", [](Meta& m, Tensors&) {
                   auto layers = nlohmann::json::parse(m["layers"]);
                   layers[8]["cin"] = 32;
                   m["layers"] = layers.dump();
                 }).string(), in, out},
       "layer 'g_conv_last': takes 32 channels but receives 24 (the layers do not chain)"},
      {{"infer", test::data_path("models/README.md").string(), in, out}, "cannot read safetensors"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out}, "takes 1 constant plane (parameter), got 0"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out, "--planes", "0.5,0.5"}, "got 2"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out, "--planes", "x"}, "'x' is not a number"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out, "--planes", "3"}, "out of range; valid: 0"},
      {{"infer", model_path("combined"), in, out, "--operator", "Sharpen"}, "has no operator 'Sharpen'; valid: Nonlocal_dehazing"},
      {{"infer", model_path("L0_smoothing"), in, out, "--operator", "L0_smoothing"}, "has no operator planes"},
      {{"infer", model_path("combined"), in, out, "--operator", "TV_L1", "--planes", "1"}, "give one of --planes, --operator and --param"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out, "--param", "lambda=0.1"}, "carries no operator parameter"},
      {{"infer", model_path("parameterized_L0_smoothing"), in, out, "--param", "lambda"}, "valid: NAME=NUMBER"},
      {{"infer", model_path("L0_smoothing"), in, out, "--device", "tpu"}, "valid: cpu, vulkan, auto"},
      {{"infer", model_path("L0_smoothing"), in, out, "--device", "vulkan", "--device-memory", "0"}, "--device-memory"},
      {{"infer", model_path("L0_smoothing"), in, (dir / "out.bmp").string()}, "out.bmp"},
      {{"infer", model_path("L0_smoothing"), (dir / "missing.png").string(), out}, "missing.png"},
      {{"infer", model_path("L0_smoothing"), in, out, "--threads", "0"}, "--threads 0 is out of range; valid: 1..1024"},
      {{"model", "info", (dir / "truncated.safetensors").string()}, "cannot read safetensors"},
      {{"model", "describe", model_path("L0_smoothing")}, "unknown subcommand 'describe'; valid: info"},
  };
  for (const auto& [args, part] : cases) {
    std::string label;
    for (const auto& a : args) label += a.substr(a.find_last_of('/') + 1) + " ";
    expect_one_line(label, run(args, dir), part);
    EXPECT_FALSE(fs::exists(out)) << label;
  }
}

TEST(InferCli, ParamSetsThePlaneAParameterizedModelWasTrainedWith) {
  const fs::path dir = test::scratch_dir("infer-param");
  // The published parameterized network, its plane declared to carry
  // l0_smooth's lambda on a log scale over [0.002, 0.2].
  const auto st = SafeTensors::load(model_path("parameterized_L0_smoothing"));
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, info] : st.tensors()) {
    const auto raw = st.bytes(name);
    tensors[name] = Tensor{info.dtype, info.shape, std::vector<std::uint8_t>(raw.begin(), raw.end())};
  }
  const model::Model published = model::Model::load(model_path("parameterized_L0_smoothing"));
  auto metadata = published.provenance();
  for (auto& [k, v] : model::spec_metadata(published.spec())) metadata[k] = v;
  metadata["input_planes"] =
      R"([{"name":"parameter","min":0,"max":1,"param":"lambda","scale":"log","param_range":[0.002,0.2]}])";
  write_file_atomic(dir / "mapped.safetensors", encode_safetensors(tensors, metadata));
  const std::string m = (dir / "mapped.safetensors").string();
  write_image(dir / "in.png", test::synthetic_image(64, 80, 3));
  const std::string in = (dir / "in.png").string();
  ASSERT_EQ(run({"infer", m, in, (dir / "by_param.npy").string(), "--param", "lambda=0.02", "-q"}, dir).status, 0);
  ASSERT_EQ(run({"infer", m, in, (dir / "by_plane.npy").string(), "--planes", "0.5", "-q"}, dir).status, 0);
  EXPECT_EQ(cv::norm(read_image(dir / "by_param.npy"), read_image(dir / "by_plane.npy"), cv::NORM_INF), 0.0);
  expect_one_line("out of range", run({"infer", m, in, (dir / "x.png").string(), "--param", "lambda=0.5"}, dir),
                  "lambda = 0.5 is outside the range the network was trained on; valid: 0.002..0.2");
  expect_one_line("missing", run({"infer", m, in, (dir / "x.png").string(), "--param", "sigma=3"}, dir),
                  "needs parameter 'lambda'");
  const Result info = run({"model", "info", m}, dir);
  EXPECT_NE(info.out.find("--param lambda=V, V in 0.002..0.2"), std::string::npos) << info.out;
  const auto json = nlohmann::json::parse(run({"model", "info", m, "--json"}, dir).out);
  EXPECT_EQ(json["planes"][0]["param"], "lambda");
  EXPECT_EQ(json["planes"][0]["scale"], "log");
}

TEST(InferCli, AnImageBeyondTheMemoryBudgetIsRefusedBeforeWork) {
#ifdef OPFORGE_SANITIZED
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: ulimit -v cannot apply";
#endif
  const fs::path dir = test::scratch_dir("infer-memory");
  write_image(dir / "big.png", test::synthetic_image(2700, 2700, 3));
  // CAN32 at 7.3 MP keeps 32 float planes (0.93 GB) and its 13 input
  // planes (0.38 GB, above the 700 MB address space by themselves): it is
  // refused up front, not killed by bad_alloc half-way.
  const Result r = run({"infer", model_path("combined"), (dir / "big.png").string(), (dir / "out.png").string(),
                        "--operator", "TV_L1"},
                       dir, "ulimit -v 700000;");
  expect_one_line("ulimit -v", r, "forward pass needs an estimated");
  EXPECT_FALSE(fs::exists(dir / "out.png"));
}

// The Vulkan device (lavapipe in CI), every run under the validation layer:
// a message on stderr fails the test.
const std::string kValidated = "OPFORGE_VULKAN_VALIDATION=1 ";

TEST(InferCli, VulkanListsDevicesAndGivesTheCpuResult) {
  const fs::path dir = test::scratch_dir("infer-vulkan");
  const Result list = run({"infer", "--list-devices"}, dir);
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(list.out.rfind("0: ", 0), 0u) << list.out;
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  write_image(dir / "crop.npy", photo(cv::Rect(600, 400, 120, 90)).clone());
  const Result cpu = run({"infer", model_path("L0_smoothing"), (dir / "crop.npy").string(), (dir / "cpu.npy").string()}, dir);
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  for (const std::vector<std::string>& extra : {std::vector<std::string>{"--device", "vulkan"},
                                                {"--device", "vulkan", "--device-index", "0", "--device-memory", "2"}}) {
    std::vector<std::string> args = {"infer", model_path("L0_smoothing"), (dir / "crop.npy").string(), (dir / "gpu.npy").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run(args, dir, kValidated);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");  // no validation message
    EXPECT_LE(cv::norm(read_image(dir / "gpu.npy"), read_image(dir / "cpu.npy"), cv::NORM_INF), 1e-4);
  }
  // auto takes a GPU; lavapipe (a CPU device, CI's only one) is slower than
  // the CPU executor, so auto runs on the CPU there and says so.
  const Result automatic = run({"infer", model_path("L0_smoothing"), (dir / "crop.npy").string(), (dir / "auto.npy").string(),
                                "--device", "auto"},
                               dir, kValidated);
  ASSERT_EQ(automatic.status, 0) << automatic.err;
  const bool only_cpu_devices = list.out.find("(CPU, ") != std::string::npos && list.out.find("\n1: ") == std::string::npos;
  if (only_cpu_devices) {
    EXPECT_EQ(automatic.err_lines(), 1) << automatic.err;
    EXPECT_NE(automatic.err.find("--device auto: running on the CPU (the only Vulkan device"), std::string::npos) << automatic.err;
    EXPECT_EQ(cv::norm(read_image(dir / "auto.npy"), read_image(dir / "cpu.npy"), cv::NORM_INF), 0.0);
  } else {
    EXPECT_LE(cv::norm(read_image(dir / "auto.npy"), read_image(dir / "cpu.npy"), cv::NORM_INF), 1e-4);
  }
  const Result half = run({"infer", model_path("L0_smoothing"), (dir / "crop.npy").string(), (dir / "half.npy").string(), "--device",
                           "vulkan", "--fp16"},
                          dir, kValidated);
  ASSERT_EQ(half.status, 0) << half.err;
  EXPECT_EQ(half.err, "");
  const double fp16_error = cv::norm(read_image(dir / "half.npy"), read_image(dir / "cpu.npy"), cv::NORM_INF);
  EXPECT_GT(fp16_error, 0.0);  // it did store half precision
  EXPECT_LE(fp16_error, 2e-2);
}

TEST(InferCli, NoVulkanLoaderNoDeviceOrABadIndexIsOneLineAndCpuStillRuns) {
  const fs::path dir = test::scratch_dir("infer-no-vulkan");
  const Image photo = read_image(test::data_path("can24/000001_input.png"));
  write_image(dir / "crop.png", photo(cv::Rect(0, 0, 32, 24)).clone());
  const auto args = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"infer", model_path("L0_smoothing"), (dir / "crop.png").string(), (dir / "out.png").string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const std::string no_loader = "OPFORGE_VULKAN_LOADER=/nonexistent/libvulkan.so.1 ";
  expect_one_line("no loader", run(args({"--device", "vulkan"}), dir, no_loader), "the loader /nonexistent/libvulkan.so.1 cannot be opened");
  expect_one_line("no device", run(args({"--device", "vulkan"}), dir, "VK_ICD_FILENAMES=/nonexistent.json " + kValidated), "no Vulkan 1.1 driver found");
  expect_one_line("bad index", run(args({"--device", "vulkan", "--device-index", "99"}), dir, kValidated),
                  "--device-index 99 is out of range: valid 0..");
  expect_one_line("bad device", run(args({"--device", "gpu"}), dir), "--device 'gpu' is invalid; valid: cpu, vulkan, auto");
  expect_one_line("index on cpu", run(args({"--device-index", "0"}), dir), "need --device vulkan or auto");
  EXPECT_FALSE(fs::exists(dir / "out.png"));
  // Without a loader the CPU still runs, chosen or as auto's fallback.
  for (const std::string device : {"cpu", "auto"}) {
    const Result r = run(args({"--device", device}), dir, no_loader);
    EXPECT_EQ(r.status, 0) << device << ": " << r.err;
    if (device == "auto") {  // and says so, on one line
      EXPECT_EQ(r.err_lines(), 1) << r.err;
      EXPECT_NE(r.err.find("--device auto: running on the CPU (Vulkan is not available"), std::string::npos) << r.err;
    } else {
      EXPECT_EQ(r.err, "");
    }
    EXPECT_TRUE(fs::exists(dir / "out.png")) << device;
    fs::remove(dir / "out.png");
  }
}

TEST(InferCli, ModelInfoDescribesTheNetwork) {
  const fs::path dir = test::scratch_dir("model-info");
  const Result text = run({"model", "info", model_path("parameterized_L0_smoothing")}, dir);
  ASSERT_EQ(text.status, 0) << text.err;
  for (const char* part : {"can32_an_parameterized", "4 channels: 3 image (BGR", "plane 1  parameter", "receptive field  513 x 513",
                           "g_conv8      3x3   32 -> 32   dilation 128", "parameters       75285", "MIT"}) {
    EXPECT_NE(text.out.find(part), std::string::npos) << part << " not in:\n" << text.out;
  }
  const Result json = run({"model", "info", model_path("L0_smoothing"), "--json"}, dir);
  ASSERT_EQ(json.status, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["receptive_field"], 257);
  EXPECT_EQ(j["parameters"], 37219);
  EXPECT_EQ(j["macs_per_pixel"], 37008.0);
  EXPECT_EQ(j["flops_per_pixel"], 74016.0);
  EXPECT_EQ(j["channel_order"], "BGR");
  EXPECT_EQ(j["quantisation"], "truncate");
  EXPECT_EQ(j["layers"].size(), 9u);
  EXPECT_EQ(j["layers"][6]["dilation"], 64);
}

TEST(InferCli, UsageComesFromTheCommandTable) {
  const fs::path dir = test::scratch_dir("cli-usage");
  const Result usage = run({"--help"}, dir);
  ASSERT_EQ(usage.status, 0);
  for (const char* c : {"  list", "  apply", "  metrics", "  datagen", "  train", "  eval", "  infer", "  model info"}) {
    EXPECT_NE(usage.out.find(c), std::string::npos) << c;
  }
  expect_one_line("unknown", run({"fly"}, dir), "unknown command 'fly'; valid: list, apply, metrics, datagen, train, eval, infer, model");
  // Commands that do not compute have no --threads.
  expect_one_line("list --threads", run({"list", "--threads", "2"}, dir), "unrecognised option '--threads'");
}

}  // namespace
}  // namespace opforge
