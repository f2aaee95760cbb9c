#include "opforge/core/io.hpp"

#include <gtest/gtest.h>

#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <tuple>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "opforge/core/error.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

namespace fs = std::filesystem;
using test::data_path;
using test::error_of;
using test::scratch_dir;

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                           static_cast<std::streamsize>(bytes.size()));
}


TEST(ImageIo, Reads8BitPngExactlyAsOpenCvDoes) {
  const auto path = data_path("conformance/inputs/carving256.png");
  const Image img = read_image(path);
  ASSERT_EQ(img.type(), CV_32FC3);
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(bgr.type(), CV_8UC3);
  for (int y = 0; y < img.rows; y += 17) {
    for (int x = 0; x < img.cols; x += 13) {
      const auto p = bgr.at<cv::Vec3b>(y, x);
      const auto q = img.at<cv::Vec3f>(y, x);
      EXPECT_EQ(q[0], static_cast<float>(p[2] / 255.0));  // RGB order
      EXPECT_EQ(q[2], static_cast<float>(p[0] / 255.0));
    }
  }
}

TEST(ImageIo, Reads16BitPngAsOpenCvDoes) {
  const auto path = data_path("conformance/l0/carving256_lambda0.02.png");
  const Image img = read_image(path);
  cv::Mat bgr = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(bgr.type(), CV_16UC3);
  for (int y = 0; y < img.rows; y += 11) {
    for (int x = 0; x < img.cols; x += 7) {
      EXPECT_EQ(img.at<cv::Vec3f>(y, x)[0], static_cast<float>(bgr.at<cv::Vec3w>(y, x)[2] / 65535.0));
    }
  }
}

TEST(ImageIo, PngRoundTripsAt8And16BitsGreyAndColour) {
  const auto dir = scratch_dir("png-roundtrip");
  for (int channels : {1, 3}) {
    const Image img = test::synthetic_image(37, 53, channels);
    for (int depth : {8, 16}) {
      const auto path = dir / std::to_string(channels * 100 + depth).append(".png");
      write_image(path, img, {.png_depth = depth});
      const Image back = read_image(path);
      ASSERT_EQ(back.type(), img.type());
      double max_err = cv::norm(back, img, cv::NORM_INF);
      EXPECT_LE(max_err, depth == 8 ? 1e-7 : 0.5 / 65535 + 1e-7);  // synthetic image is on the 8-bit lattice
    }
  }
}

TEST(ImageIo, PngWriteClipsAndRoundsHalfAwayFromZero) {
  Image img(1, 4, CV_32FC1);
  img.at<float>(0, 0) = -0.3f;
  img.at<float>(0, 1) = 1.7f;
  img.at<float>(0, 2) = static_cast<float>(0.5 / 255.0 + 1e-9);
  img.at<float>(0, 3) = static_cast<float>(254.5 / 255.0 + 1e-9);
  const Image back = decode_png(encode_png(img, 8), "x");
  EXPECT_EQ(back.at<float>(0, 0), 0.0f);
  EXPECT_EQ(back.at<float>(0, 1), 1.0f);
  EXPECT_EQ(back.at<float>(0, 2), static_cast<float>(1 / 255.0));
  EXPECT_EQ(back.at<float>(0, 3), 1.0f);
}

// Off-lattice values in [-0.1, 1.1] (so clipping is exercised), smooth
// enough that every PNG filter wins on some rows.
Image random_image(int rows, int cols, int channels, unsigned seed) {
  Image img(rows, cols, CV_MAKETYPE(CV_32F, channels));
  cv::RNG rng(seed);
  rng.fill(img, cv::RNG::UNIFORM, -0.1, 1.1);
  cv::Mat smooth;
  cv::GaussianBlur(img, smooth, {0, 0}, 1.5);
  for (int y = 0; y < rows; ++y) {  // rough and smooth bands
    if ((y / 7) % 2) smooth.row(y).copyTo(img.row(y));
  }
  return img;
}

// What the encoder must store: clip to [0,1], round half away from zero.
cv::Mat quantised(const Image& img, int depth) {
  const double scale = depth == 16 ? 65535.0 : 255.0;
  cv::Mat q(img.rows, img.cols, CV_MAKETYPE(depth == 16 ? CV_16U : CV_8U, img.channels()));
  const int n = img.cols * img.channels();
  for (int y = 0; y < img.rows; ++y) {
    for (int i = 0; i < n; ++i) {
      const double v = std::round(std::clamp(static_cast<double>(img.ptr<float>(y)[i]), 0.0, 1.0) * scale);
      if (depth == 16) q.ptr<std::uint16_t>(y)[i] = static_cast<std::uint16_t>(v);
      else q.ptr<std::uint8_t>(y)[i] = static_cast<std::uint8_t>(v);
    }
  }
  return q;
}

TEST(PngEncoder, ManyStripsDecodeExactlyWithLibpngAndOpenCv) {
  // Filtered images of 2 MiB and more are deflated in 512 KiB strips, each
  // a raw deflate stream whose final block is made non-final and followed by
  // an empty stored block. 16-bit RGB rows of 4.2 kB: 600 rows are 5 strips
  // (noise: stored blocks); a smooth 1024x800 RGB image is 5 strips of
  // Huffman-coded blocks at 8 bits; the others are one stream, down to tiny
  // and one-column images.
  cv::Mat smooth = random_image(800, 1024, 3, 11);
  cv::GaussianBlur(smooth, smooth, {0, 0}, 3.0);
  std::vector<Image> images = {smooth};
  for (const auto& [rows, cols, channels] : {std::tuple{600, 700, 3}, {300, 700, 1}, {1, 1, 3}, {2, 3, 1}, {517, 1, 3}}) {
    images.push_back(random_image(rows, cols, channels, static_cast<unsigned>(rows * cols + channels)));
  }
  for (const Image& img : images) {
    const int rows = img.rows, cols = img.cols, channels = img.channels();
    for (int depth : {8, 16}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + "x" + std::to_string(channels) + " depth " +
                   std::to_string(depth));
      const std::vector<std::uint8_t> png = encode_png(img, depth);
      const cv::Mat expected = quantised(img, depth);
      cv::Mat decoded = cv::imdecode(png, cv::IMREAD_UNCHANGED);  // an independent decoder
      ASSERT_FALSE(decoded.empty());
      if (channels == 3) cv::cvtColor(decoded, decoded, cv::COLOR_BGR2RGB);
      EXPECT_EQ(cv::norm(decoded, expected, cv::NORM_INF), 0.0);
      const Image back = decode_png(png, "x");  // libpng, with its CRC and Adler-32 checks
      cv::Mat back_q;
      back.convertTo(back_q, expected.type(), depth == 16 ? 65535.0 : 255.0);
      EXPECT_EQ(cv::norm(back_q, expected, cv::NORM_INF), 0.0);
    }
  }
}

TEST(PngEncoder, BytesDoNotDependOnTheThreadCount) {
  const Image img = random_image(600, 700, 3, 7);  // 16-bit: 2.5 MB filtered, deflated in strips
  std::vector<std::uint8_t> one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = encode_png(img, 16);
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = encode_png(img, 16);
  }
  EXPECT_EQ(one, two);
}

TEST(PngEncoder, CompressesAndRefusesBadSettings) {
  const Image img = random_image(200, 200, 3, 3);
  cv::Mat smooth;
  cv::GaussianBlur(img, smooth, {0, 0}, 4.0);
  EXPECT_LT(encode_png(smooth, 8).size(), 200u * 200 * 3 / 2);  // filtered and deflated, not stored
  EXPECT_GT(encode_png(smooth, 8, 0).size(), 200u * 200 * 3);  // level 0 stores
  EXPECT_NE(error_of([&] { encode_png(img, 12); }).find("valid: 8, 16"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_png(img, 8, 13); }).find("valid: 0..12"), std::string::npos);
}

TEST(ImageIo, NpyRoundTripsExactlyAndUnclipped) {
  const auto dir = scratch_dir("npy-roundtrip");
  for (int channels : {1, 3}) {
    Image img = test::synthetic_image(5, 7, channels);
    img.at<float>(0, 0) = -1.625f;
    img.at<float>(1, 1) = 2.125f;
    const auto path = dir / "a.npy";
    write_image(path, img);
    const Image back = read_image(path);
    ASSERT_EQ(back.type(), img.type());
    EXPECT_EQ(cv::norm(back, img, cv::NORM_INF), 0.0);
  }
}

TEST(ImageIo, ReadsTheConformancePacksFloatNpy) {
  const Image npy = read_image(data_path("conformance/l0/canyon256_lambda0.002.f32.npy"));
  EXPECT_EQ(npy.rows, 256);
  EXPECT_EQ(npy.cols, 256);
  EXPECT_EQ(npy.type(), CV_32FC3);
  double lo, hi;
  cv::minMaxLoc(npy.reshape(1), &lo, &hi);
  EXPECT_GT(hi, 1.0);  // the sidecar records max 1.0178: unclipped values survive
}

TEST(ImageIo, NpyRejectsOtherDtypesLayoutsAndSizes) {
  const auto base = encode_npy(test::synthetic_image(4, 4, 3));
  std::string header(base.begin() + 10, base.begin() + 10 + (base[8] | (base[9] << 8)));
  const auto with_header = [&](std::string h, std::size_t data_bytes) {
    h.resize(header.size(), ' ');
    h.back() = '\n';
    std::vector<std::uint8_t> b(10 + h.size() + data_bytes, 0);
    std::copy(base.begin(), base.begin() + 10, b.begin());
    std::copy(h.begin(), h.end(), b.begin() + 10);
    return b;
  };
  EXPECT_NE(error_of([&] { decode_npy(with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4, 4, 3), }", 384), "f.npy"); })
                .find("dtype '<f8' is not supported; valid: float32"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_npy(with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (4, 4, 3), }", 192), "f.npy"); })
                .find("Fortran-order"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4, 3), }", 100), "f.npy"); })
                .find("does not match shape"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (48,), }", 192), "f.npy"); })
                .find("valid: (H, W) or (H, W, C)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_npy(std::vector<std::uint8_t>(base.begin(), base.begin() + 9), "f.npy"); }).find("truncated"),
            std::string::npos);
}

TEST(ImageIo, JpegEncodeDecodeMatchesOpenCvsLibjpegTurbo) {
  const Image img = read_image(data_path("conformance/inputs/canyon256.png"));
  const cv::Mat u8 = quantize_u8(img);
  const auto ours = encode_jpeg(u8, 90);
  cv::Mat bgr;
  cv::cvtColor(u8, bgr, cv::COLOR_RGB2BGR);
  std::vector<std::uint8_t> theirs;
  cv::imencode(".jpg", bgr, theirs, {cv::IMWRITE_JPEG_QUALITY, 90});
  EXPECT_EQ(ours, theirs);  // same library, same settings: same bytes
  const Image decoded = decode_jpeg(ours, "x.jpg");
  cv::Mat cv_decoded = cv::imdecode(theirs, cv::IMREAD_COLOR), rgb;
  cv::cvtColor(cv_decoded, rgb, cv::COLOR_BGR2RGB);
  EXPECT_EQ(cv::norm(quantize_u8(decoded), rgb, cv::NORM_INF), 0.0);
}

TEST(ImageIo, ClearErrorsForMissingEmptyTruncatedAndUnknownFiles) {
  const auto dir = scratch_dir("bad-files");
  EXPECT_NE(error_of([&] { read_image(dir / "missing.png"); }).find("no such file"), std::string::npos);
  write_bytes(dir / "empty.png", {});
  EXPECT_NE(error_of([&] { read_image(dir / "empty.png"); }).find("empty (0 bytes)"), std::string::npos);
  auto png = read_file(data_path("conformance/inputs/carving256.png"));
  png.resize(png.size() / 3);
  write_bytes(dir / "trunc.png", png);
  EXPECT_NE(error_of([&] { read_image(dir / "trunc.png"); }).find("corrupt PNG"), std::string::npos);
  auto jpg = read_file(data_path("samples/mit_adobe_000003_1024.jpg"));
  jpg.resize(jpg.size() / 2);
  write_bytes(dir / "trunc.jpg", jpg);
  EXPECT_NE(error_of([&] { read_image(dir / "trunc.jpg"); }).find("corrupt JPEG"), std::string::npos);
  write_bytes(dir / "text.png", {'h', 'e', 'l', 'l', 'o'});
  EXPECT_NE(error_of([&] { read_image(dir / "text.png"); }).find("not a PNG, JPEG or .npy"), std::string::npos);
  EXPECT_NE(error_of([&] { read_image(dir); }).find("is a directory"), std::string::npos);
}

TEST(ImageIo, RejectsAlphaChannels) {
  const auto dir = scratch_dir("alpha");
  cv::Mat rgba(8, 8, CV_8UC4, cv::Scalar(1, 2, 3, 4));
  cv::imwrite((dir / "rgba.png").string(), rgba);
  EXPECT_NE(error_of([&] { read_image(dir / "rgba.png"); }).find("4 channels (RGBA)"), std::string::npos);
  write_file_atomic(dir / "four.npy", encode_npy(cv::Mat(2, 2, CV_32FC4, cv::Scalar::all(0.5))));
  EXPECT_THROW(write_image(dir / "four.png", cv::Mat(2, 2, CV_32FC4, cv::Scalar::all(0.5))), Error);
  EXPECT_NE(error_of([&] { read_image(dir / "four.npy"); }).find("4 channels"), std::string::npos);
}

TEST(AtomicWrite, LeavesOnlyTheFinalFile) {
  const auto dir = scratch_dir("atomic");
  write_file_atomic(dir / "a.bin", std::vector<std::uint8_t>{1, 2, 3});
  write_file_atomic(dir / "a.bin", std::vector<std::uint8_t>{4, 5});  // replaces
  EXPECT_EQ(listing(dir), std::vector<std::string>{"a.bin"});
  EXPECT_EQ(read_file(dir / "a.bin"), (std::vector<std::uint8_t>{4, 5}));
}

TEST(AtomicWrite, FailsClearlyAndLeavesNothingWhenTheDirectoryIsMissing) {
  const auto dir = scratch_dir("atomic-missing");
  const std::string msg = error_of([&] { write_image(dir / "no" / "such" / "x.png", test::synthetic_image(4, 4, 3)); });
  EXPECT_NE(msg.find("cannot write"), std::string::npos);
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos);
  EXPECT_TRUE(listing(dir).empty());
}

TEST(AtomicWrite, RejectsUnknownExtensions) {
  const auto dir = scratch_dir("atomic-ext");
  EXPECT_NE(error_of([&] { write_image(dir / "x.bmp", test::synthetic_image(4, 4, 3)); }).find("valid: .png, .npy, .jpg"),
            std::string::npos);
  EXPECT_TRUE(listing(dir).empty());
}

TEST(ImageConvention, EightBitLatticeIsPromotedToExactDoubles) {
  Image img(1, 3, CV_32FC1);
  img.at<float>(0, 0) = static_cast<float>(77 / 255.0);
  img.at<float>(0, 1) = 0.0f;
  img.at<float>(0, 2) = 1.0f;
  const cv::Mat d = to_double_exact(img);
  EXPECT_EQ(d.at<double>(0, 0), 77 / 255.0);  // not float32(77/255) widened
  img.at<float>(0, 1) = 0.123456f;           // off the lattice: values kept as they are
  EXPECT_EQ(to_double_exact(img).at<double>(0, 0), static_cast<double>(static_cast<float>(77 / 255.0)));
}

}  // namespace
}  // namespace opforge
