// Core's rules for untrusted input: image values (finite, within ±1e6),
// decoders that check a header's dimensions against a pixel limit and the
// memory budget before allocating, regular files only, one seed rule, one
// --threads rule.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/memory.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/core/params.hpp"
#include "opforge/core/threads.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::scratch_dir;


void expect_contains(const std::string& text, const std::vector<std::string>& parts) {
  for (const auto& p : parts) EXPECT_NE(text.find(p), std::string::npos) << "'" << p << "' not in: " << text;
}

TEST(ImageValues, NonFiniteAndHugeValuesAreRefusedNamingTheFirstOne) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const float bad : {nan, inf, -inf, 1e30f, -2e6f}) {
    Image img = test::synthetic_image(70, 90, 3);
    img.at<cv::Vec3f>(65, 40)[2] = bad;  // a later row holds one too: the first is named
    img.at<cv::Vec3f>(12, 7)[1] = bad;
    const std::string msg = error_of([&] { require_image(img, "l0_smooth"); });
    expect_contains(msg, {"l0_smooth: value ", "at row 12, column 7, channel 1", "valid: finite values within ±1e6"});
    EXPECT_NE(msg.find(std::isfinite(bad) ? "is out of range" : "is not finite"), std::string::npos) << msg;
    // The same answer whatever the thread count (rows are scanned in parallel).
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    EXPECT_EQ(error_of([&] { require_image(img, "l0_smooth"); }), msg);
  }
  Image edge = test::synthetic_image(4, 4, 1);
  edge.at<float>(3, 3) = 1e6f;  // the bound itself is valid
  edge.at<float>(0, 0) = -1e6f;
  EXPECT_NO_THROW(require_image(edge, "x"));
}

TEST(ImageValues, NpyWithNonFiniteValuesIsRefusedNamingTheFile) {
  const auto dir = scratch_dir("npy-nonfinite");
  Image img = test::synthetic_image(8, 9, 3);
  img.at<cv::Vec3f>(2, 5)[0] = -std::numeric_limits<float>::infinity();
  write_file_atomic(dir / "bad.npy", encode_npy(img));
  expect_contains(error_of([&] { read_image(dir / "bad.npy"); }),
                  {"cannot use '", "bad.npy': value -inf at row 2, column 5, channel 0 is not finite"});
  // write_image refuses such an image too: no garbage is ever written.
  EXPECT_THROW(write_image(dir / "out.png", img), Error);
  EXPECT_FALSE(fs::exists(dir / "out.png"));
}

TEST(ImageValues, MetricsRefuseNonFiniteImagesInsteadOfCallingThemIdentical) {
  Image a = test::synthetic_image(16, 16, 3), b = a.clone();
  a.at<cv::Vec3f>(3, 4)[1] = std::numeric_limits<float>::quiet_NaN();
  b.at<cv::Vec3f>(3, 4)[1] = std::numeric_limits<float>::quiet_NaN();
  expect_contains(error_of([&] { compare_images(a, b); }), {"the first image: value nan at row 3, column 4"});
  expect_contains(error_of([&] { compare_images(b.setTo(0.5), a); }), {"the second image: value nan"});
}

TEST(Npy, NegativeAndMalformedDimensionsAreRefused) {
  const auto npy_with_shape = [](const std::string& shape) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
    header.push_back('\n');
    std::vector<std::uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<std::uint8_t>(header.size()), 0};
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + 5 * 64 * 3 * 4, 0);
    return b;
  };
  for (const std::string shape : {"(-5, 64, 3)", "(5, -64, 3)", "(5, 64, +3)", "(5, 6 4, 3)", "(5, 0x40, 3)", "()"}) {
    expect_contains(error_of([&] { decode_npy(npy_with_shape(shape), "s.npy"); }),
                    {"s.npy", "shape " + shape + " is malformed"});
  }
  EXPECT_EQ(decode_npy(npy_with_shape("(5, 64, 3)"), "ok.npy").rows, 5);
}

// A valid 1x1 PNG whose IHDR is then patched to claim width x height (its CRC
// no longer matches: the dimensions must be refused before that matters).
std::vector<std::uint8_t> png_claiming(std::uint32_t width, std::uint32_t height) {
  std::vector<std::uint8_t> png = encode_png(test::synthetic_image(1, 1, 3), 8);
  for (int k = 0; k < 4; ++k) {
    png[16 + k] = static_cast<std::uint8_t>(width >> (24 - 8 * k));
    png[20 + k] = static_cast<std::uint8_t>(height >> (24 - 8 * k));
  }
  return png;
}

// A valid 8x8 baseline JPEG whose SOF0 is patched to claim width x height.
std::vector<std::uint8_t> jpeg_claiming(std::uint16_t width, std::uint16_t height) {
  std::vector<std::uint8_t> jpg = encode_jpeg(quantize_u8(test::synthetic_image(8, 8, 3)), 90);
  for (std::size_t i = 2; i + 9 < jpg.size(); ++i) {
    if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
      jpg[i + 5] = static_cast<std::uint8_t>(height >> 8);
      jpg[i + 6] = static_cast<std::uint8_t>(height & 0xFF);
      jpg[i + 7] = static_cast<std::uint8_t>(width >> 8);
      jpg[i + 8] = static_cast<std::uint8_t>(width & 0xFF);
      return jpg;
    }
  }
  ADD_FAILURE() << "no SOF0 marker";
  return jpg;
}

TEST(DecodeLimits, HeaderBombsAreRefusedBeforeAnyPixelIsAllocated) {
  const auto start = std::chrono::steady_clock::now();
  // 70 bytes claiming 30000x30000 (900 MP): refused by the default pixel limit.
  expect_contains(error_of([&] { decode_image(png_claiming(30000, 30000), "bomb.png"); }),
                  {"cannot read 'bomb.png': its header says 30000x30000 (900.0 MP), above the pixel limit of 89478485",
                   "--max-pixels"});
  expect_contains(error_of([&] { decode_image(jpeg_claiming(60000, 60000), "bomb.jpg"); }),
                  {"cannot read 'bomb.jpg': its header says 60000x60000 (3600.0 MP), above the pixel limit"});
  // Past the side limit, whatever the pixel limit.
  expect_contains(error_of([&] { decode_image(png_claiming(70000, 1), "wide.png", {.max_pixels = 1u << 31}); }),
                  {"70000x1", "valid: at most 65536 pixels on a side"});
  // Raised past what memory holds: the memory budget refuses it, still before allocating.
  expect_contains(error_of([&] { decode_image(png_claiming(65536, 65536), "huge.png", {.max_pixels = 1ull << 32}); }),
                  {"cannot read 'huge.png': decoding its 65536x65536 pixels needs an estimated", "of memory, but only"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
}

TEST(DecodeLimits, TheLimitCountsPixelsAndCanBeRaised) {
  const auto png = encode_png(test::synthetic_image(100, 100, 3), 8);
  expect_contains(error_of([&] { decode_image(png, "a.png", {.max_pixels = 9999}); }),
                  {"100x100 (0.0 MP), above the pixel limit of 9999"});
  EXPECT_EQ(decode_image(png, "a.png", {.max_pixels = 10000}).rows, 100);
  const auto npy = encode_npy(test::synthetic_image(100, 100, 3));
  EXPECT_NE(error_of([&] { decode_image(npy, "a.npy", {.max_pixels = 9999}); }).find("pixel limit"), std::string::npos);
  const auto jpg = encode_jpeg(quantize_u8(test::synthetic_image(100, 100, 3)), 90);
  EXPECT_NE(error_of([&] { decode_image(jpg, "a.jpg", {.max_pixels = 9999}); }).find("pixel limit"), std::string::npos);
}

TEST(ReadFile, DevicesFifosAndOversizedFilesAreRefused) {
  const auto dir = scratch_dir("read-file-kinds");
  expect_contains(error_of([] { read_file("/dev/zero"); }), {"cannot read '/dev/zero': not a regular file"});
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0644), 0);
  // Refused by its type: opening a FIFO for reading would block forever.
  expect_contains(error_of([&] { read_image(dir / "fifo"); }), {"fifo': not a regular file"});
  std::ofstream(dir / "big.bin") << std::string(5000, 'x');
  expect_contains(error_of([&] { read_file(dir / "big.bin", false, 4096); }), {"big.bin': the file is"});
  EXPECT_EQ(read_file(dir / "big.bin", false, 5000).size(), 5000u);
  // read_image bounds the file by the pixel limit (16 bytes a pixel + 64 MiB).
  std::ofstream(dir / "junk.png", std::ios::binary) << "x";
  fs::resize_file(dir / "junk.png", 65u << 20);  // sparse: costs no disk
  EXPECT_NE(error_of([&] { read_image(dir / "junk.png", {.max_pixels = 1}); }).find("more than the"), std::string::npos);
}

// In a child process: RLIMIT_AS is process-wide and cannot be raised back.
TEST(MemoryBudget, CountsTheAddressSpaceLimit) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    rlimit as{};
    std::ifstream statm("/proc/self/statm");
    double pages = 0;
    statm >> pages;
    as.rlim_cur = as.rlim_max = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (256u << 20);
    if (::setrlimit(RLIMIT_AS, &as) != 0) ::_exit(3);
    const MemoryBudget budget = memory_budget();
    if (budget.limited_by != "the address-space limit (ulimit -v)" || budget.bytes > 257.0 * (1 << 20)) ::_exit(4);
    try {
      require_memory("wls_smooth", "a 4000x4000 image", 1e9);
      ::_exit(5);
    } catch (const Error& e) {
      const std::string msg = e.what();
      const bool ok = msg.find("wls_smooth: a 4000x4000 image needs an estimated 953.7 MiB of memory, but only") == 0 &&
                      msg.find("(the address-space limit (ulimit -v))") != std::string::npos;
      ::_exit(ok ? 0 : 6);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

TEST(Seeds, OneRuleEverywhere) {
  EXPECT_EQ(parse_seed("0"), 0u);
  EXPECT_EQ(parse_seed("18446744073709551615"), UINT64_MAX);
  for (const std::string bad : {"-1", "18446744073709551616", "+1", "1e3", " 1", "", "0x10", "1.0"}) {
    expect_contains(error_of([&] { parse_seed(bad); }),
                    {"--seed '" + bad + "' is invalid; valid: an integer in 0..18446744073709551615"});
  }
}

TEST(Threads, OneRangeAndOneMeaning) {
  for (const int bad : {0, -1, 1025}) {
    expect_contains(error_of([&] { check_thread_count(bad); }),
                    {"--threads " + std::to_string(bad) + " is out of range; valid: 1..1024 (default: all cores)"});
  }
  const ThreadLimit two(2);
  EXPECT_EQ(two.workers(), 2);
  EXPECT_THROW(ThreadLimit(0), Error);
}

}  // namespace
}  // namespace opforge
