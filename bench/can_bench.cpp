// CAN inference on the CPU: speed against the machine's GEMM peak and against
// an im2col + OpenBLAS SGEMM forward of the same network, and the published
// CAN24 results reproduced image by image. bench/can_speed.sh runs it beside
// PyTorch's forward (bench/can_torch.py); bench/can_published.sh prints the
// table for all twelve published images.
//
//   can_bench speed MODEL IMAGE [--threads N] [--repeat R] [--planes V,...]
//                   [--write-input IN.npy] [--write-output OUT.npy]
//   can_bench published MODEL INPUT_DIR PUBLISHED_DIR
//   can_bench resize IN OUT WIDTH HEIGHT

#include <cblas.h>
#include <tbb/global_control.h>
#include <opencv2/imgproc.hpp>
#include <tbb/parallel_for.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/memory.hpp"
#include "opforge/model/cpu_executor.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

using namespace opforge;
using Clock = std::chrono::steady_clock;

double percent(std::size_t part, std::size_t whole) {
  return 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

double best_seconds(int repeat, const std::function<void()>& fn) {
  double best = 1e30;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// The machine's single-precision GEMM rate: OpenBLAS SGEMM, 2048^3.
double gemm_peak_gflops(int repeat) {
  const int n = 2048;
  std::vector<float> a(std::size_t(n) * n, 0.5f), b(std::size_t(n) * n, 0.25f), c(std::size_t(n) * n);
  const double s = best_seconds(repeat, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  });
  return 2.0 * n * n * n / s / 1e9;
}

// The peer path: each layer as im2col (one band of rows at a time) times the
// HWIO kernel, which is already the K x cout matrix, by OpenBLAS SGEMM; the
// normalisation as the executor does it.
cv::Mat im2col_forward(const model::Model& m, const cv::Mat& input) {
  const int rows = input.rows, cols = input.cols;
  std::vector<float> x(input.ptr<float>(), input.ptr<float>() + input.total() * input.channels());
  const auto& spec = m.spec();
  for (std::size_t li = 0; li < spec.layers.size(); ++li) {
    const auto& l = spec.layers[li];
    const auto& w = m.weights()[li];
    const int k = l.kernel_h * l.kernel_w * l.cin;
    std::vector<float> y(std::size_t(rows) * cols * l.cout);
    const int band = 16;
    std::vector<float> patches(std::size_t(band) * cols * k);
    for (int y0 = 0; y0 < rows; y0 += band) {
      const int y1 = std::min(rows, y0 + band);
      tbb::parallel_for(y0, y1, [&](int r) {
        for (int c = 0; c < cols; ++c) {
          float* p = &patches[(std::size_t(r - y0) * cols + c) * k];
          for (int ky = 0; ky < l.kernel_h; ++ky) {
            for (int kx = 0; kx < l.kernel_w; ++kx, p += l.cin) {
              const int iy = r + (ky - l.kernel_h / 2) * l.dilation, ix = c + (kx - l.kernel_w / 2) * l.dilation;
              if (iy < 0 || iy >= rows || ix < 0 || ix >= cols) {
                std::memset(p, 0, sizeof(float) * l.cin);
              } else {
                std::memcpy(p, &x[(std::size_t(iy) * cols + ix) * l.cin], sizeof(float) * l.cin);
              }
            }
          }
        }
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (y1 - y0) * cols, l.cout, k, 1.0f, patches.data(), k,
                  w.kernel.data(), l.cout, 0.0f, &y[std::size_t(y0) * cols * l.cout], l.cout);
    }
    const std::size_t n = std::size_t(rows) * cols;
    std::vector<float> scale(l.cout, 1.0f), shift(l.cout, 0.0f);
    if (l.bias) shift = w.bias;
    if (l.normalizer == model::Normalizer::adaptive_bn) {
      for (int o = 0; o < l.cout; ++o) {
        double s = 0, q = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const double v = y[i * l.cout + o];
          s += v;
          q += v * v;
        }
        const double count = static_cast<double>(n);
        const double mean = s / count, r = 1.0 / std::sqrt(q / count - mean * mean + spec.bn_epsilon);
        scale[o] = float(w.w0 + w.w1 * r);
        shift[o] = float(w.w1 * (w.beta[o] - mean * r));
      }
    }
    tbb::parallel_for(std::size_t(0), n, std::size_t(4096), [&](std::size_t i) {
      for (std::size_t e = std::min(n, i + 4096); i < e; ++i) {
        for (int o = 0; o < l.cout; ++o) {
          float z = scale[o] * y[i * l.cout + o] + shift[o];
          if (l.activation == model::Activation::leaky_relu) z = std::max(l.negative_slope * z, z);
          y[i * l.cout + o] = z;
        }
      }
    });
    x = std::move(y);
  }
  cv::Mat out(rows, cols, CV_32FC(spec.output_channels()));
  std::memcpy(out.ptr<float>(), x.data(), x.size() * sizeof(float));
  return out;
}

std::vector<float> parse_planes(const std::string& text) {
  std::vector<float> v;
  for (std::size_t b = 0; b <= text.size();) {
    const std::size_t e = std::min(text.find(',', b), text.size());
    v.push_back(std::stof(text.substr(b, e - b)));
    b = e + 1;
  }
  return v;
}

int speed(int argc, char** argv) {
  if (argc < 4) throw opforge::Error("usage: can_bench speed MODEL IMAGE [--threads N] [--repeat R] [--planes V,...] ...");
  int threads = 2, repeat = 3;
  std::string write_input, write_output;
  std::vector<float> planes;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads") threads = std::stoi(value);
    else if (flag == "--repeat") repeat = std::stoi(value);
    else if (flag == "--planes") planes = parse_planes(value);
    else if (flag == "--write-input") write_input = value;
    else if (flag == "--write-output") write_output = value;
    else throw opforge::Error("unknown option " + flag);
  }
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  openblas_set_num_threads(threads);
  const model::Model m = model::Model::load(argv[2]);
  const Image image = read_image(argv[3]);
  const cv::Mat input = model::network_input(m, image, planes);
  if (!write_input.empty()) write_file_atomic(write_input, encode_npy(input));
  const double flops = 2 * m.spec().macs_per_pixel() * image.rows * image.cols;
  const double peak = gemm_peak_gflops(repeat);
  std::printf("image %dx%d, %s, %.1f GFLOP per forward, %d threads\n", image.cols, image.rows,
              m.spec().architecture.c_str(), flops / 1e9, threads);
  std::printf("%-26s %8.1f GFLOP/s\n", "sgemm 2048^3 (OpenBLAS)", peak);
  model::CpuExecutor direct;
  cv::Mat ours;
  const double t_direct = best_seconds(repeat, [&] { ours = direct.forward(m, input); });
  std::printf("%-26s %8.3f s  %6.1f GFLOP/s  %5.1f%% of sgemm\n", ("direct " + direct.name()).c_str(), t_direct,
              flops / t_direct / 1e9, 100 * flops / t_direct / 1e9 / peak);
  cv::Mat peer;
  const double t_im2col = best_seconds(repeat, [&] { peer = im2col_forward(m, input); });
  std::printf("%-26s %8.3f s  %6.1f GFLOP/s  %5.1f%% of sgemm   (direct is %.2fx faster; max |diff| %.2g)\n",
              "im2col + OpenBLAS sgemm", t_im2col, flops / t_im2col / 1e9, 100 * flops / t_im2col / 1e9 / peak,
              t_im2col / t_direct, cv::norm(ours, peer, cv::NORM_INF));
  if (!write_output.empty()) write_file_atomic(write_output, encode_npy(ours));
  std::printf("direct_seconds %.4f\n", t_direct);
  return 0;
}

int published(int argc, char** argv) {
  if (argc != 5) throw opforge::Error("usage: can_bench published MODEL INPUT_DIR PUBLISHED_DIR");
  namespace fs = std::filesystem;
  const model::Model m = model::Model::load(argv[2]);
  std::vector<fs::path> inputs;
  for (const auto& e : fs::directory_iterator(argv[3])) {
    if (e.path().extension() == ".png") inputs.push_back(e.path());
  }
  std::sort(inputs.begin(), inputs.end());
  std::printf("| image | size HxW | max abs diff | values equal | values off by 1 | values off by >1 | seconds |\n"
              "|---|---|---|---|---|---|---|\n");
  std::size_t all = 0, all_equal = 0, all_one = 0, all_more = 0;
  model::CpuExecutor executor;
  for (const auto& in : inputs) {
    const Image image = read_image(in);
    const auto t0 = Clock::now();
    const Image ours = model::quantise(m, executor.run(m, image));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const Image ref = read_image(fs::path(argv[4]) / in.filename());
    const float* a = ours.ptr<float>();
    const float* b = ref.ptr<float>();
    const std::size_t n = ours.total() * 3;
    std::size_t equal = 0, one = 0, more = 0;
    long worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const long d = std::labs(std::lround(a[i] * 255) - std::lround(b[i] * 255));
      worst = std::max(worst, d);
      (d == 0 ? equal : d == 1 ? one : more) += 1;
    }
    all += n, all_equal += equal, all_one += one, all_more += more;
    std::printf("| %s | %dx%d | %ld | %.4f%% | %.4f%% | %zu | %.2f |\n", in.stem().c_str(), image.rows, image.cols,
                worst, percent(equal, n), percent(one, n), more, seconds);
  }
  std::printf("| all | | | %.4f%% | %.4f%% | %zu | |\n", percent(all_equal, all), percent(all_one, all), all_more);
  return all_more == 0 && percent(all_equal, all) >= 99.9 ? 0 : 1;
}

// A test photo at another size (the 4K memory check needs a 4K input).
int resize(int argc, char** argv) {
  if (argc != 6) throw opforge::Error("usage: can_bench resize IN OUT WIDTH HEIGHT");
  cv::Mat out;
  cv::resize(read_image(argv[2]), out, cv::Size(std::stoi(argv[4]), std::stoi(argv[5])), 0, 0, cv::INTER_CUBIC);
  write_image(argv[3], out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    opforge::reuse_large_allocations();
    if (argc >= 2 && std::string(argv[1]) == "speed") return speed(argc, argv);
    if (argc >= 2 && std::string(argv[1]) == "published") return published(argc, argv);
    if (argc >= 2 && std::string(argv[1]) == "resize") return resize(argc, argv);
    std::fprintf(stderr, "usage: can_bench speed|published ...\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "can_bench: %s\n", e.what());
    return 2;
  }
}
