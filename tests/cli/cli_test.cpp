// End-to-end tests of the `opforge` executable: the CLI contract of
// ARCHITECTURE.md, exit statuses, and the one-line errors for bad input.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/operators/registry.hpp"
#include "cli_runner.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::data_path;
using test::Result;
using test::run;

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                           static_cast<std::streamsize>(bytes.size()));
}

const fs::path kInput = data_path("conformance/inputs/carving256.png");

// One line on stderr naming the problem (and the range), exit 2, no output file.
void expect_bad_input(const std::string& label, const std::vector<std::string>& args, const fs::path& dir,
                      const std::vector<std::string>& must_mention) {
  const Result r = run(args, dir);
  EXPECT_EQ(r.status, 2) << label << ": " << r.err;
  EXPECT_EQ(r.err_lines(), 1) << label << ": " << r.err;
  for (const auto& m : must_mention) EXPECT_NE(r.err.find(m), std::string::npos) << label << ": '" << m << "' not in: " << r.err;
  EXPECT_TRUE(r.out.empty()) << label;
  EXPECT_TRUE(files_in(dir).size() <= 4) << label;  // only the fixtures this test made
  EXPECT_FALSE(fs::exists(dir / "out.png")) << label << " left an output file";
  for (const auto& f : files_in(dir)) EXPECT_EQ(f.find(".tmp-"), std::string::npos) << label << " left " << f;
}

TEST(CliBadInput, EachCaseGivesOneLineExitTwoAndNoOutput) {
  const fs::path dir = test::scratch_dir("cli-bad");
  write_bytes(dir / "empty.png", {});
  auto png = read_file(kInput);
  png.resize(png.size() / 2);
  write_bytes(dir / "truncated.png", png);
  write_image(dir / "rgb.npy", test::synthetic_image(8, 8, 3));
  auto npy = read_file(dir / "rgb.npy");
  fs::remove(dir / "rgb.npy");
  const std::string header(npy.begin(), npy.begin() + 10 + (npy[8] | (npy[9] << 8)));
  std::string f8 = header;
  f8.replace(f8.find("<f4"), 3, "<f8");
  std::vector<std::uint8_t> wrong(f8.begin(), f8.end());
  wrong.resize(header.size() + 8 * 8 * 3 * 8, 0);
  write_bytes(dir / "float64.npy", wrong);
  cv::imwrite((dir / "rgba.png").string(), cv::Mat(8, 8, CV_8UC4, cv::Scalar(10, 20, 30, 40)));
  const std::string out = (dir / "out.png").string();

  expect_bad_input("missing file", {"apply", "l0_smooth", (dir / "nope.png").string(), out}, dir,
                   {"nope.png", "no such file"});
  expect_bad_input("0-byte file", {"apply", "l0_smooth", (dir / "empty.png").string(), out}, dir,
                   {"empty.png", "empty (0 bytes)"});
  expect_bad_input("truncated PNG", {"apply", "l0_smooth", (dir / "truncated.png").string(), out}, dir,
                   {"truncated.png", "corrupt PNG"});
  expect_bad_input("npy of a wrong dtype", {"apply", "l0_smooth", (dir / "float64.npy").string(), out}, dir,
                   {"float64.npy", "'<f8'", "valid: float32"});
  expect_bad_input("4-channel image", {"apply", "l0_smooth", (dir / "rgba.png").string(), out}, dir,
                   {"rgba.png", "4 channels", "grey (1) or RGB (3)"});
  std::string every_name;
  for (const auto& e : all_operators()) every_name += (every_name.empty() ? "" : ", ") + e.name;
  expect_bad_input("unknown operator", {"apply", "l0_smoothing", kInput.string(), out}, dir,
                   {"unknown operator 'l0_smoothing'", "valid: " + every_name});
  expect_bad_input("unknown parameter", {"apply", "l0_smooth", kInput.string(), out, "--param", "lamda=0.1"}, dir,
                   {"unknown parameter 'lamda'", "valid: lambda, kappa"});
  expect_bad_input("lambda=-1", {"apply", "l0_smooth", kInput.string(), out, "--param", "lambda=-1"}, dir,
                   {"'lambda' = -1", "out of range", "valid: (0, 1]"});
  expect_bad_input("lambda=abc", {"apply", "l0_smooth", kInput.string(), out, "--param", "lambda=abc"}, dir,
                   {"'lambda' = 'abc'", "not a number", "valid: (0, 1]"});
  expect_bad_input("kappa=1", {"apply", "l0_smooth", kInput.string(), out, "--param", "kappa=1"}, dir,
                   {"'kappa' = 1", "valid: (1, 10]"});
  expect_bad_input("rtv sigma=7", {"apply", "rtv_smooth", kInput.string(), out, "--param", "sigma=7"}, dir,
                   {"'sigma' = 7", "out of range", "valid: (0, 6]"});
  expect_bad_input("rtv solver=lu", {"apply", "rtv_smooth", kInput.string(), out, "--param", "solver=lu"}, dir,
                   {"'solver' = 'lu'", "valid: pcg | direct"});
  expect_bad_input("rtv iterations=2.5", {"apply", "rtv_smooth", kInput.string(), out, "--param", "iterations=2.5"},
                   dir, {"'iterations' = 2.5", "not an integer", "valid: 1..10"});
  expect_bad_input("style_transfer without a style", {"apply", "style_transfer", kInput.string(), out}, dir,
                   {"'style' is required", "the model image's path"});
  expect_bad_input("style_transfer with a missing style", {"apply", "style_transfer", kInput.string(), out, "--param",
                   "style=" + (dir / "no-style.png").string()}, dir, {"no-style.png"});
  expect_bad_input("style_transfer iterations=0", {"apply", "style_transfer", kInput.string(), out, "--param",
                   "iterations=0"}, dir, {"'iterations' = 0", "valid: 1..10"});
  expect_bad_input("wls alpha=0", {"apply", "wls_smooth", kInput.string(), out, "--param", "alpha=0"}, dir,
                   {"'alpha' = 0", "valid: (0, 3]"});
  expect_bad_input("scale=0", {"apply", "resize_bicubic", kInput.string(), out, "--param", "scale=0"}, dir,
                   {"'scale' = 0", "valid: [0.001, 16]"});
  expect_bad_input("scale=1e-9", {"apply", "resize_bicubic", kInput.string(), out, "--param", "scale=1e-9"}, dir,
                   {"'scale' = 1e-09", "out of range", "valid: [0.001, 16]"});
  expect_bad_input("quality=101", {"apply", "jpeg", kInput.string(), out, "--param", "quality=101"}, dir,
                   {"'quality' = 101", "valid: 1..100"});
  expect_bad_input("sigma=-3", {"apply", "gaussian_noise", kInput.string(), out, "--param", "sigma=-3"}, dir,
                   {"'sigma' = -3", "valid: [0, 100]"});
  expect_bad_input("param without =", {"apply", "l0_smooth", kInput.string(), out, "--param", "lambda"}, dir,
                   {"NAME=VALUE"});
  expect_bad_input("unknown output extension", {"apply", "l0_smooth", kInput.string(), (dir / "out.bmp").string()},
                   dir, {"out.bmp", "valid: .png, .npy, .jpg"});
  expect_bad_input("bad depth", {"apply", "l0_smooth", kInput.string(), out, "--depth", "12"}, dir,
                   {"--depth 12", "valid: 8 or 16"});
  expect_bad_input("bad threads", {"apply", "l0_smooth", kInput.string(), out, "--threads", "0"}, dir,
                   {"--threads 0", "valid: 1..1024"});
  expect_bad_input("unknown option", {"apply", "l0_smooth", kInput.string(), out, "--lambda", "0.1"}, dir,
                   {"--lambda"});
  expect_bad_input("missing arguments", {"apply", "l0_smooth"}, dir, {"expected OP IN OUT"});
  expect_bad_input("unknown command", {"smooth"}, dir, {"unknown command 'smooth'", "valid: list, apply, metrics"});
  expect_bad_input("metrics size mismatch",
                   {"metrics", kInput.string(), data_path("samples/mit_adobe_000003_1024.jpg").string()}, dir,
                   {"differ in shape"});
}

TEST(CliApply, WritesPng16AndUnclippedNpyThatMatchTheReference) {
  const fs::path dir = test::scratch_dir("cli-apply");
  const Result png = run({"apply", "l0_smooth", data_path("conformance/inputs/canyon256.png").string(),
                          (dir / "o.png").string(), "--param", "lambda=0.002", "--depth", "16", "--threads", "1"},
                         dir);
  ASSERT_EQ(png.status, 0) << png.err;
  const Result npy = run({"apply", "l0_smooth", data_path("conformance/inputs/canyon256.png").string(),
                          (dir / "o.npy").string(), "-p", "lambda=0.002"},
                         dir);
  ASSERT_EQ(npy.status, 0) << npy.err;
  const Image ref = read_image(data_path("conformance/l0/canyon256_lambda0.002.png"));
  const Image ref_npy = read_image(data_path("conformance/l0/canyon256_lambda0.002.f32.npy"));
  EXPECT_GE(psnr(read_image(dir / "o.png"), ref), 60.0);
  const Image ours_npy = read_image(dir / "o.npy");
  EXPECT_GE(psnr(ours_npy, ref_npy), 60.0);
  double hi;
  cv::minMaxLoc(ours_npy.reshape(1), nullptr, &hi);
  EXPECT_GT(hi, 1.0);  // unclipped
  // 16-bit PNG: values are multiples of 1/65535 that are not all on the 8-bit lattice.
  EXPECT_FALSE(is_on_8bit_lattice(read_image(dir / "o.png")));
}

TEST(CliMetrics, PrintsPsnrSsimMaxAbsAsTextAndJson) {
  const fs::path dir = test::scratch_dir("cli-metrics");
  const std::string a = kInput.string();
  const std::string b = data_path("conformance/l0/carving256_lambda0.02.png").string();
  const Result text = run({"metrics", a, b}, dir);
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("psnr_db "), std::string::npos);
  EXPECT_NE(text.out.find("ssim "), std::string::npos);
  EXPECT_NE(text.out.find("max_abs "), std::string::npos);
  const Result json = run({"metrics", a, b, "--json"}, dir);
  ASSERT_EQ(json.status, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  const Metrics expected = compare_images(read_image(a), read_image(b));
  EXPECT_NEAR(j.at("psnr_db").get<double>(), expected.psnr_db, 1e-9);
  EXPECT_NEAR(j.at("ssim").get<double>(), expected.ssim, 1e-12);
  EXPECT_NEAR(j.at("max_abs").get<double>(), expected.max_abs, 1e-12);
  const Result same = run({"metrics", a, a, "--json"}, dir);
  EXPECT_TRUE(nlohmann::json::parse(same.out).at("identical").get<bool>());
}

TEST(CliMetrics, YChannelWithShaveOnABicubicX3RoundTrip) {
  // HR = canyon256 modcropped to 255×255; LR = bicubic ×1/3 (85×85); SR =
  // bicubic ×3. The expected value, 36.763157 dB, was checked by hand with an
  // independent float64 script (Y = (16 + 65.481R + 128.553G + 24.966B)/255,
  // 3-pixel border shaved, peak 255 on Y·255): 36.7631572 dB.
  const fs::path dir = test::scratch_dir("cli-metrics-y");
  const Image hr = read_image(data_path("conformance/inputs/canyon256.png"))(cv::Rect(0, 0, 255, 255)).clone();
  const fs::path hr_path = dir / "hr.npy", lr_path = dir / "lr.npy", sr_path = dir / "sr.npy";
  write_image(hr_path, hr);
  ASSERT_EQ(run({"apply", "resize_bicubic", hr_path.string(), lr_path.string(), "--param", "scale=0.3333333333333333"}, dir).status, 0);
  ASSERT_EQ(run({"apply", "resize_bicubic", lr_path.string(), sr_path.string(), "--param", "scale=3"}, dir).status, 0);
  const Result r = run({"metrics", sr_path.string(), hr_path.string(), "--y-channel", "--shave", "3", "--json"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NEAR(nlohmann::json::parse(r.out).at("psnr_db").get<double>(), 36.7631572, 1e-5);
  const Result unshaved = run({"metrics", sr_path.string(), hr_path.string(), "--y-channel", "--json"}, dir);
  // Without the shave the value differs (36.80 dB here): the option is honoured.
  EXPECT_GT(std::abs(nlohmann::json::parse(unshaved.out).at("psnr_db").get<double>() - 36.7631572), 0.01);
}

TEST(CliList, JsonAndTextListTheRegistry) {
  const fs::path dir = test::scratch_dir("cli-list");
  const Result text = run({"list"}, dir);
  ASSERT_EQ(text.status, 0);
  for (const auto& e : all_operators()) {
    EXPECT_NE(text.out.find(e.name), std::string::npos) << e.name;
    for (const auto& s : e.params) EXPECT_NE(text.out.find(s.range_text()), std::string::npos) << e.name << "." << s.name;
  }
  const Result json = run({"list", "--json"}, dir);
  ASSERT_EQ(json.status, 0);
  EXPECT_EQ(nlohmann::json::parse(json.out), nlohmann::json::parse(registry_json()));
}

// Every registered operator, by the name the registry gives it, runs through
// `opforge apply` with its defaults (a model image for the one that needs a
// file) and writes an image of the promised size.
TEST(CliApply, EveryRegisteredOperatorRunsWithItsDefaults) {
  const fs::path dir = test::scratch_dir("cli-every-operator");
  const Image input = read_image(kInput);
  for (const auto& e : all_operators()) {
    const fs::path out = dir / (e.name + ".npy");
    std::vector<std::string> args = {"apply", e.name, kInput.string(), out.string()};
    for (const auto& s : e.params) {
      if (s.required) args.insert(args.end(), {"--param", s.name + "=" + kInput.string()});
    }
    const Result r = run(args, dir);
    ASSERT_EQ(r.status, 0) << e.name << ": " << r.err;
    const Image result = read_image(out);
    if (e.kind == OperatorKind::filter) {
      EXPECT_EQ(result.size(), input.size()) << e.name;
    } else {
      EXPECT_GT(result.total(), 0u) << e.name;
    }
  }
}

}  // namespace
}  // namespace opforge
