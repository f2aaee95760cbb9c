// One CAN training step (forward, MSE loss, backward, Adam) on a crop of a
// photo: its time, and its loss and gradients written for bench/can_train_parity.py,
// which runs the same step in PyTorch and compares.
//
//   learner_bench MODEL IMAGE [--crop N] [--threads N] [--repeat R] --out DIR
//     writes DIR/input.npy, DIR/target.npy (network order, H x W x C) and
//     DIR/grads.safetensors (every parameter's gradient, the loss in its metadata)

#include <tbb/global_control.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <opencv2/core.hpp>
#include <string>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/safetensors.hpp"
#include "opforge/learner/adam.hpp"
#include "opforge/learner/network.hpp"

namespace {

using namespace opforge;
using learner::Tensor;

Tensor<float> batch_of(const cv::Mat& planes) {
  Tensor<float> t(1, planes.rows, planes.cols, planes.channels());
  std::memcpy(t.data.data(), planes.ptr<float>(), t.size() * sizeof(float));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) throw Error("usage: learner_bench MODEL IMAGE [--crop N] [--threads N] [--repeat R] --out DIR");
    int crop = 512, threads = 2, repeat = 3;
    std::filesystem::path out;
    for (int i = 3; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--crop") crop = std::stoi(value);
      else if (flag == "--threads") threads = std::stoi(value);
      else if (flag == "--repeat") repeat = std::stoi(value);
      else if (flag == "--out") out = value;
      else throw Error("unknown option " + flag);
    }
    if (out.empty()) throw Error("--out DIR is required");
    std::filesystem::create_directories(out);
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    const model::Model m = model::Model::load(argv[1]);
    const Image photo = read_image(argv[2]);
    const int size = std::min({crop, photo.rows, photo.cols});
    const Image image = photo(cv::Rect((photo.cols - size) / 2, (photo.rows - size) / 2, size, size)).clone();
    Image flipped;
    cv::flip(image, flipped, 1);  // any target will do; this one gives a loss of some size
    const cv::Mat input = model::network_input(m, image, {});
    const cv::Mat target = model::network_input(m, flipped, {});
    write_file_atomic(out / "input.npy", encode_npy(input));
    write_file_atomic(out / "target.npy", encode_npy(target));

    // The gradients of one step from the file's weights.
    learner::Network net(m);
    const auto x = batch_of(input), t = batch_of(target);
    const auto loss = learner::mse_loss(net.forward(x), t);
    net.backward(loss.grad);
    std::map<std::string, opforge::Tensor> grads;
    for (const auto* p : net.parameters()) grads[p->name] = opforge::Tensor::f32(p->shape, p->grad);
    char loss_text[64];
    std::snprintf(loss_text, sizeof loss_text, "%.17g", loss.value);
    write_file_atomic(out / "grads.safetensors", encode_safetensors(grads, {{"loss", loss_text}}));

    // Whole steps, timed: forward, loss, backward, Adam.
    learner::Adam<float> adam(net.parameters(), {});
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      adam.zero_grad();
      const auto l = learner::mse_loss(net.forward(x), t);
      net.backward(l.grad);
      adam.step();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double flops = 3 * 2 * m.spec().macs_per_pixel() * size * size;  // forward + the two backward products
    std::printf("opforge training step, %s, %dx%d crop, %d threads: %.3f s (%.1f GFLOP/s), loss %.6g\n",
                m.spec().architecture.c_str(), size, size, threads, best, flops / best / 1e9, loss.value);
    std::printf("opforge_step_seconds %.4f\n", best);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "learner_bench: %s\n", e.what());
    return 2;
  }
}
