// The CLI against hostile input: non-finite pixels for every operator,
// decompression bombs, device files, file-size and address-space limits,
// and the one rule each for seeds and --threads.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "opforge/core/io.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::data_path;
using test::Result;
using test::run;

const fs::path kInput = data_path("conformance/inputs/canyon256.png");

// A sanitizer build (make test-asan) cannot start under `ulimit -v`.
#ifdef OPFORGE_SANITIZED
constexpr bool kAddressSpaceLimits = false;
#else
constexpr bool kAddressSpaceLimits = true;
#endif

void expect_one_line(const std::string& label, const Result& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.status, 2) << label << ": " << r.err;
  EXPECT_EQ(r.err_lines(), 1) << label << ": " << r.err;
  for (const auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << label << ": '" << p << "' not in: " << r.err;
}

bool has_temporaries(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp-") != std::string::npos) return true;
  }
  return false;
}

// The operator names, from the registry as the CLI lists it.
std::vector<std::string> operator_names(const fs::path& dir) {
  const Result list = run({"list", "--json"}, dir);
  EXPECT_EQ(list.status, 0) << list.err << list.out.size();
  const nlohmann::json registry = nlohmann::json::parse(list.out);
  std::vector<std::string> names;
  for (const auto& op : registry.at("operators")) names.push_back(op.at("name"));
  return names;
}

TEST(CliHostileInput, EveryOperatorRefusesNonFiniteAndHugeValuesWithinSeconds) {
  const fs::path dir = test::scratch_dir("cli-nonfinite");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<std::string, float>> cases = {{"nan", nan}, {"pinf", inf}, {"ninf", -inf}, {"huge", 1e30f}};
  for (const auto& [name, value] : cases) {
    Image img = test::synthetic_image(24, 32, 3);
    img.at<cv::Vec3f>(5, 9)[2] = value;
    write_file_atomic(dir / (name + ".npy"), encode_npy(img));  // write_image would refuse it
  }
  const std::vector<std::string> names = operator_names(dir);
  ASSERT_GE(names.size(), 13u);
  for (const auto& op : names) {
    for (const auto& [name, value] : cases) {
      std::vector<std::string> args = {"apply", op, (dir / (name + ".npy")).string(), (dir / "out.npy").string()};
      if (op == "style_transfer") args.insert(args.end(), {"--param", "style=" + kInput.string()});
      const auto start = std::chrono::steady_clock::now();
      const Result r = run(args, dir, "", 30);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      expect_one_line(op + " on " + name, r, {name + ".npy': value ", "at row 5, column 9, channel 2", "valid: finite"});
      EXPECT_LT(seconds, 10.0) << op << " on " << name;
      EXPECT_FALSE(fs::exists(dir / "out.npy")) << op;
    }
  }
  // metrics refuses them too, rather than reporting "identical" or max_abs 0.
  expect_one_line("metrics", run({"metrics", (dir / "nan.npy").string(), (dir / "nan.npy").string(), "--json"}, dir),
                  {"opforge metrics: cannot use '", "nan.npy': value nan at row 5, column 9, channel 2"});
}

TEST(CliHostileInput, DecompressionBombsAreRefusedByThePixelLimit) {
  const fs::path dir = test::scratch_dir("cli-bomb");
  // A 1x1 PNG whose IHDR claims 30000x30000.
  std::vector<std::uint8_t> png = encode_png(test::synthetic_image(1, 1, 3), 8);
  for (int k = 0; k < 4; ++k) png[16 + k] = png[20 + k] = static_cast<std::uint8_t>(30000u >> (24 - 8 * k));
  write_file_atomic(dir / "bomb.png", png);
  const auto start = std::chrono::steady_clock::now();
  const Result r = run({"apply", "l0_smooth", (dir / "bomb.png").string(), (dir / "out.png").string()}, dir,
                       kAddressSpaceLimits ? "ulimit -v 2000000;" : "");  // a 2.6 GB allocation would fail
  expect_one_line("bomb", r, {"bomb.png': its header says 30000x30000 (900.0 MP), above the pixel limit of 89478485",
                              "--max-pixels"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  // --max-pixels lowers (or raises) the limit, and is checked itself.
  expect_one_line("--max-pixels 1000", run({"metrics", kInput.string(), kInput.string(), "--max-pixels", "1000"}, dir),
                  {"canyon256.png': its header says 256x256 (0.1 MP), above the pixel limit of 1000"});
  EXPECT_EQ(run({"metrics", kInput.string(), kInput.string(), "--max-pixels", "65536"}, dir).status, 0);
  for (const std::string bad : {"0", "-5", "abc", "4294967297"}) {
    expect_one_line("--max-pixels " + bad, run({"apply", "l0_smooth", kInput.string(), "o.png", "--max-pixels", bad}, dir),
                    {"--max-pixels '" + bad + "' is invalid; valid: 1..4294967296"});
  }
}

TEST(CliHostileInput, DevicesAndFifosAreRefusedInOneLine) {
  const fs::path dir = test::scratch_dir("cli-devices");
  const std::string out = (dir / "out.png").string();
  expect_one_line("/dev/zero", run({"apply", "l0_smooth", "/dev/zero", out}, dir, "", 20),
                  {"cannot read '/dev/zero': not a regular file"});
  ASSERT_EQ(::mkfifo((dir / "fifo.png").c_str(), 0644), 0);
  expect_one_line("fifo", run({"apply", "l0_smooth", (dir / "fifo.png").string(), out}, dir, "", 20),
                  {"fifo.png': not a regular file"});
  expect_one_line("directions=/dev/zero",
                  run({"apply", "dehaze_nonlocal", kInput.string(), out, "--param", "directions=/dev/zero"}, dir, "", 20),
                  {"'directions' = '/dev/zero' is invalid (not a regular file)"});
  expect_one_line("style=/dev/zero",
                  run({"apply", "style_transfer", kInput.string(), out, "--param", "style=/dev/zero"}, dir, "", 20),
                  {"'style' = '/dev/zero' is invalid (not a regular file)"});
  expect_one_line("airlight=2,2,2",
                  run({"apply", "dehaze_nonlocal", kInput.string(), out, "--param", "airlight=2,2,2"}, dir),
                  {"'airlight' = '2,2,2' is invalid", "valid: auto | r,g,b with each in (0, 1]"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliHostileInput, AFileSizeLimitIsAWriteErrorNotASignal) {
  const fs::path dir = test::scratch_dir("cli-fsize");
  // ulimit -f counts 512- or 1024-byte blocks: 16 of them is far below the
  // 786 KB float32 result.
  const Result r = run({"apply", "l0_smooth", kInput.string(), (dir / "out.npy").string()}, dir, "ulimit -f 16;");
  expect_one_line("ulimit -f", r, {"cannot write '", "out.npy': File too large"});
  EXPECT_FALSE(fs::exists(dir / "out.npy"));
  EXPECT_FALSE(has_temporaries(dir));
}

TEST(CliHostileInput, TheAddressSpaceLimitIsCountedBeforeWork) {
  if (!kAddressSpaceLimits) GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: ulimit -v cannot apply";
  const fs::path dir = test::scratch_dir("cli-rlimit-as");
  write_image(dir / "big.png", test::synthetic_image(1200, 1200, 3));
  // wls_smooth at 1.44 MP needs well over 1 GB; under a 700 MB address space
  // it is refused up front instead of dying of bad_alloc half-way.
  const Result r = run({"apply", "wls_smooth", (dir / "big.png").string(), (dir / "out.png").string()}, dir,
                       "ulimit -v 700000;");
  expect_one_line("ulimit -v", r, {"wls_smooth: ", "needs an estimated", "(the address-space limit (ulimit -v))"});
  EXPECT_FALSE(fs::exists(dir / "out.png"));
}

TEST(CliHostileInput, OneRuleForSeedsAndThreads) {
  const fs::path dir = test::scratch_dir("cli-seed-threads");
  const std::string out = (dir / "out.png").string();
  expect_one_line("--seed -1", run({"apply", "gaussian_noise", kInput.string(), out, "--seed", "-1"}, dir),
                  {"--seed '-1' is invalid; valid: an integer in 0..18446744073709551615"});
  EXPECT_EQ(run({"apply", "gaussian_noise", kInput.string(), out, "--seed", "18446744073709551615"}, dir).status, 0);
  std::ofstream(dir / "r.yaml") << "name: r\nseed: 1\nsources: " + kInput.parent_path().string() +
                                       "\noperators:\n  - name: jpeg\n";
  // The same words from both commands: 0 is not "all cores" in one and an error in the other.
  const Result apply = run({"apply", "l0_smooth", kInput.string(), out, "--threads", "0"}, dir);
  const Result datagen = run({"datagen", (dir / "r.yaml").string(), "--out", (dir / "d").string(), "--threads", "0"}, dir);
  expect_one_line("apply --threads 0", apply, {"--threads 0 is out of range; valid: 1..1024 (default: all cores)"});
  expect_one_line("datagen --threads 0", datagen, {"--threads 0 is out of range; valid: 1..1024 (default: all cores)"});
  EXPECT_EQ(apply.err.substr(apply.err.find(':')), datagen.err.substr(datagen.err.find(':')));
  // Error lines carry the command's prefix once.
  const Result shave = run({"metrics", kInput.string(), kInput.string(), "--shave", "-1"}, dir);
  expect_one_line("--shave -1", shave, {"opforge metrics: shave -1 is negative"});
  EXPECT_EQ(shave.err.find("metrics: metrics"), std::string::npos) << shave.err;
  const Result kube = run({"datagen", (dir / "r.yaml").string(), "--out", (dir / "k").string(), "--shards", "2"}, dir,
                          "JOB_COMPLETION_INDEX=abc;export JOB_COMPLETION_INDEX;");
  expect_one_line("JOB_COMPLETION_INDEX=abc", kube, {"JOB_COMPLETION_INDEX='abc' is malformed"});
}

}  // namespace
}  // namespace opforge
