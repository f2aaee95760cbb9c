// Every backward pass against central finite differences in float64, the
// float layers against the double ones, thread-count independence, and
// Adam's steps against PyTorch's formula.

#include "opforge/learner/layers.hpp"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <functional>
#include <random>
#include <tuple>

#include "opforge/core/error.hpp"
#include "opforge/learner/adam.hpp"

namespace opforge::learner {
namespace {

template <typename T>
Tensor<T> random_tensor(int n, int h, int w, int c, std::mt19937& rng, double lo = -1, double hi = 1) {
  Tensor<T> t(n, h, w, c);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : t.data) v = T(u(rng));
  return t;
}

std::vector<double> random_values(std::size_t count, std::mt19937& rng, double scale = 0.5) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(count);
  for (auto& x : v) x = normal(rng);
  return v;
}

// loss(x) = Σ layer(x) · R for a fixed random R, so d(loss)/d(output) = R.
struct Probe {
  Layer<double>& layer;
  Tensor<double> weights;  // R
  double loss(const Tensor<double>& x) {
    const Tensor<double> y = layer.forward(x);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y.data[i] * weights.data[i];
    return s;
  }
};

// Central differences of `f` at every entry of `values`, against `analytic`.
void expect_gradient(std::vector<double>& values, const std::vector<double>& analytic, const std::function<double()>& f,
                     const std::string& what, double tolerance = 1e-6) {
  ASSERT_EQ(values.size(), analytic.size()) << what;
  const double h = 1e-6;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double keep = values[i];
    values[i] = keep + h;
    const double up = f();
    values[i] = keep - h;
    const double down = f();
    values[i] = keep;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(analytic[i], numeric, tolerance * std::max(1.0, std::abs(numeric))) << what << " element " << i;
  }
}

// Checks d(input) and every parameter's gradient of `layer` at `x`.
void check_layer(Layer<double>& layer, Tensor<double> x, std::mt19937& rng, const std::string& name) {
  const Tensor<double> y = layer.forward(x);
  Probe probe{layer, random_tensor<double>(y.n, y.h, y.w, y.c, rng)};
  for (auto* p : layer.parameters()) p->zero_grad();
  layer.forward(x);
  const Tensor<double> dx = layer.backward(probe.weights);
  std::vector<std::vector<double>> grads;
  for (auto* p : layer.parameters()) grads.push_back(p->grad);
  expect_gradient(x.data, dx.data, [&] { return probe.loss(x); }, name + " d(input)");
  const auto params = layer.parameters();
  for (std::size_t k = 0; k < params.size(); ++k) {
    expect_gradient(params[k]->value, grads[k], [&] { return probe.loss(x); }, name + " d(" + params[k]->name + ")");
  }
}

// Checks d(input) and every parameter's gradient of mean((layer(x) − target)²).
void check_under_mse(Layer<double>& layer, Tensor<double> x, const Tensor<double>& target, const std::string& name,
                     double tolerance = 1e-6) {
  for (auto* p : layer.parameters()) p->zero_grad();
  const auto dx = layer.backward(mse_loss(layer.forward(x), target).grad);
  const auto f = [&] { return mse_loss(layer.forward(x), target).value; };
  expect_gradient(x.data, dx.data, f, name + " d(input)", tolerance);
  for (auto* p : layer.parameters()) {
    const auto analytic = p->grad;
    expect_gradient(p->value, analytic, f, name + " d(" + p->name + ")", tolerance);
  }
}

TEST(LearnerLayers, ConvolutionGradientsMatchFiniteDifferences) {
  std::mt19937 rng(1);
  struct Case {
    int k, stride, dilation, h, w;
    bool bias;
  };
  for (const Case c : {Case{3, 1, 1, 5, 6, true}, Case{3, 1, 3, 7, 5, false}, Case{3, 2, 1, 7, 6, true},
                       Case{3, 2, 2, 6, 9, false}, Case{1, 1, 1, 3, 4, true}, Case{5, 1, 1, 4, 6, false}}) {
    const ConvConfig config{c.k, c.k, 3, 4, c.stride, c.dilation, c.bias};
    Conv2d<double> conv(config, "conv", random_values(std::size_t(c.k) * c.k * 12, rng),
                        c.bias ? random_values(4, rng) : std::vector<double>{});
    check_layer(conv, random_tensor<double>(2, c.h, c.w, 3, rng), rng,
                "conv k" + std::to_string(c.k) + " s" + std::to_string(c.stride) + " d" + std::to_string(c.dilation));
  }
}

TEST(LearnerLayers, ConvolutionOutputSizeIsCeilOfInputOverStride) {
  std::mt19937 rng(2);
  for (int size : {1, 2, 5, 6, 7}) {
    Conv2d<double> conv({3, 3, 1, 1, 2, 1, false}, "c", random_values(9, rng));
    const auto y = conv.forward(random_tensor<double>(1, size, size + 1, 1, rng));
    EXPECT_EQ(y.h, (size + 1) / 2);
    EXPECT_EQ(y.w, (size + 2) / 2);
  }
}

TEST(LearnerLayers, TransposedConvolutionUpsamplesAsPyTorchAndHasTheFiniteDifferenceGradient) {
  std::mt19937 rng(14);
  for (const bool bias : {true, false}) {
    ConvTranspose2d<double> up({4, 3, 2, 2, 1, bias}, "up", random_values(4 * 4 * 3 * 2, rng), bias ? random_values(2, rng) : std::vector<double>{});
    check_layer(up, random_tensor<double>(2, 3, 4, 3, rng), rng, bias ? "transposed with bias" : "transposed");
  }
  // One input pixel spreads the kernel around (iy·2 − 1, ix·2 − 1); the output is 2H × 2W.
  std::vector<double> w(16);
  for (int i = 0; i < 16; ++i) w[i] = i + 1;
  ConvTranspose2d<double> one({4, 1, 1, 2, 1, false}, "one", w);
  Tensor<double> x(1, 3, 3, 1);
  x.at(0, 1, 1, 0) = 1.0;
  const auto y = one.forward(x);
  ASSERT_EQ(y.h, 6);
  ASSERT_EQ(y.w, 6);
  for (int oy = 0; oy < 6; ++oy)
    for (int ox = 0; ox < 6; ++ox) {
      const int ky = oy - 1, kx = ox - 1;  // oy = 1·2 − 1 + ky
      const double expected = ky >= 0 && ky < 4 && kx >= 0 && kx < 4 ? w[ky * 4 + kx] : 0.0;
      EXPECT_EQ(y.at(0, oy, ox, 0), expected) << oy << "," << ox;
    }
}

TEST(LearnerLayers, AdaptiveNormalisationGradientsMatchFiniteDifferences) {
  std::mt19937 rng(3);
  AdaptiveBatchNorm<double> bn(3, "bn", 0.7, 0.4, random_values(3, rng));
  check_layer(bn, random_tensor<double>(2, 4, 5, 3, rng, -2, 3), rng, "adaptive bn");
}

TEST(LearnerLayers, AdaptiveNormalisationIsTheModelFilesFormula) {
  std::mt19937 rng(4);
  AdaptiveBatchNorm<double> bn(2, "bn", 0.5, 2.0, {0.25, -1.0});
  const auto x = random_tensor<double>(1, 3, 4, 2, rng);
  const auto y = bn.forward(x);
  for (int ch = 0; ch < 2; ++ch) {
    double mean = 0, var = 0;
    for (int i = 0; i < 12; ++i) mean += x.data[i * 2 + ch] / 12;
    for (int i = 0; i < 12; ++i) var += (x.data[i * 2 + ch] - mean) * (x.data[i * 2 + ch] - mean) / 12;  // biased
    for (int i = 0; i < 12; ++i) {
      const double v = x.data[i * 2 + ch];
      const double expected = 0.5 * v + 2.0 * ((v - mean) / std::sqrt(var + 0.001) + (ch == 0 ? 0.25 : -1.0));
      EXPECT_NEAR(y.data[i * 2 + ch], expected, 1e-12);
    }
  }
}

TEST(LearnerLayers, InstanceNormalisationGradientsMatchFiniteDifferences) {
  std::mt19937 rng(12);
  InstanceNorm<double> in(3, "in", {0.5, 1.5, -0.7}, {0.1, 0.0, -0.2});
  check_layer(in, random_tensor<double>(2, 4, 5, 3, rng, -2, 3), rng, "instance norm");
  // Each sample on its own statistics: y = γ·(x − μ_sample)/√(σ²_sample + ε) + β.
  const auto x = random_tensor<double>(2, 3, 3, 3, rng);
  const auto y = in.forward(x);
  for (int b = 0; b < 2; ++b) {
    double mean = 0, var = 0;
    for (int p = 0; p < 9; ++p) mean += x.data[(b * 9 + p) * 3 + 1] / 9;
    for (int p = 0; p < 9; ++p) var += std::pow(x.data[(b * 9 + p) * 3 + 1] - mean, 2) / 9;
    EXPECT_NEAR(y.data[(b * 9 + 4) * 3 + 1], 1.5 * (x.data[(b * 9 + 4) * 3 + 1] - mean) / std::sqrt(var + 1e-5), 1e-12);
  }
}

// Fan et al.'s weight generation: the kernel (and, for cheap tuning, the
// instance norm's scale and shift) affine in each sample's own p.
TEST(LearnerLayers, GeneratedLayersHaveTheFiniteDifferenceGradientPerSample) {
  std::mt19937 rng(14);
  auto inputs = std::make_shared<std::vector<std::vector<double>>>(std::vector<std::vector<double>>{{0.3, -1.2}, {0.02, 0.7}});
  Sequential<double> net;
  const auto make_conv = [](const std::vector<std::vector<double>>& v) -> std::unique_ptr<Layer<double>> {
    return std::make_unique<Conv2d<double>>(ConvConfig{3, 3, 3, 4, 2, 1, false}, "conv", v[0]);
  };
  net.add(std::make_unique<Generated<double>>(make_conv, std::vector<std::vector<double>>{random_values(108, rng, 0.3)},
                                              std::vector<std::vector<double>>{random_values(216, rng, 0.3)}, 2, inputs));
  const auto make_norm = [](const std::vector<std::vector<double>>& v) -> std::unique_ptr<Layer<double>> {
    return std::make_unique<InstanceNorm<double>>(4, "conv/InstanceNorm", v[0], v[1]);
  };
  net.add(std::make_unique<Generated<double>>(make_norm, std::vector<std::vector<double>>{random_values(4, rng), random_values(4, rng)},
                                              std::vector<std::vector<double>>{random_values(8, rng), random_values(8, rng)}, 2, inputs));
  const auto names = [&] {
    std::vector<std::string> n;
    for (auto* p : net.parameters()) n.push_back(p->name);
    return n;
  }();
  EXPECT_EQ(names, (std::vector<std::string>{"conv/weights", "conv/weights_from_params", "conv/InstanceNorm/gamma",
                                             "conv/InstanceNorm/gamma_from_params", "conv/InstanceNorm/beta",
                                             "conv/InstanceNorm/beta_from_params"}));
  auto x = random_tensor<double>(2, 5, 7, 3, rng);
  check_under_mse(net, x, random_tensor<double>(2, 3, 4, 4, rng), "generated", 1e-5);
  // Sample 1 with its own p is the plain layer with b + A·p as its weights.
  const auto params = net.parameters();
  std::vector<double> w(108);
  for (std::size_t i = 0; i < 108; ++i) w[i] = params[0]->value[i] + params[1]->value[i] * 0.02 + params[1]->value[108 + i] * 0.7;
  Conv2d<double> plain(ConvConfig{3, 3, 3, 4, 2, 1, false}, "plain", w);
  Tensor<double> one(1, 5, 7, 3);
  std::copy(x.data.begin() + 105, x.data.end(), one.data.begin());
  const auto plain_out = plain.forward(one);
  // Through the generated conv alone (the norm follows it in `net`).
  Generated<double> conv_only(make_conv, {params[0]->value}, {params[1]->value}, 2, inputs);
  const auto both = conv_only.forward(x);
  for (std::size_t i = 0; i < plain_out.size(); ++i) EXPECT_NEAR(both.data[plain_out.size() + i], plain_out.data[i], 1e-12);
  inputs->pop_back();
  EXPECT_THROW(net.forward(x), Error);  // one p per sample
}

// The odd-size bracket: a transposed layer's 2⌈H/2⌉ rows cut back to H.
TEST(LearnerLayers, CroppingToTheRecordedSizeHasTheFiniteDifferenceGradient) {
  std::mt19937 rng(15);
  auto slot = std::make_shared<std::pair<int, int>>();
  Sequential<double> net;
  net.add(std::make_unique<RecordSize<double>>(slot));
  net.add(std::make_unique<Conv2d<double>>(ConvConfig{3, 3, 2, 3, 2, 1, false}, "down", random_values(54, rng, 0.3)));
  net.add(std::make_unique<ConvTranspose2d<double>>(ConvTransposeConfig{4, 3, 2, 2, 1, false}, "up", random_values(96, rng, 0.3)));
  net.add(std::make_unique<CropTo<double>>(slot));
  const auto x = random_tensor<double>(2, 5, 7, 2, rng);
  EXPECT_EQ(net.forward(x).h, 5);  // 5 → 3 → 6 → 5
  EXPECT_EQ(net.forward(x).w, 7);
  check_layer(net, x, rng, "down-up-crop");
}

// Fan et al.'s residual block: relu(x + IN(conv_b(relu(IN(conv_a(x)))))).
TEST(LearnerLayers, AResidualBlockHasTheFiniteDifferenceGradient) {
  std::mt19937 rng(13);
  auto inner = std::make_unique<Sequential<double>>();
  inner->add(std::make_unique<Conv2d<double>>(ConvConfig{3, 3, 4, 4, 1, 2, false}, "a", random_values(144, rng, 0.3)));
  inner->add(std::make_unique<InstanceNorm<double>>(4, "a_in", random_values(4, rng), random_values(4, rng)));
  inner->add(std::make_unique<LeakyRelu<double>>(0.0));
  inner->add(std::make_unique<Conv2d<double>>(ConvConfig{3, 3, 4, 4, 1, 1, false}, "b", random_values(144, rng, 0.3)));
  inner->add(std::make_unique<InstanceNorm<double>>(4, "b_in", random_values(4, rng), random_values(4, rng)));
  Sequential<double> block;
  block.add(std::make_unique<Residual<double>>(std::move(inner)));
  block.add(std::make_unique<LeakyRelu<double>>(0.0));
  const auto x = random_tensor<double>(2, 5, 6, 4, rng);
  check_under_mse(block, x, random_tensor<double>(2, 5, 6, 4, rng), "residual", 1e-5);
}

TEST(LearnerLayers, LeakyReluGradientMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  LeakyRelu<double> act(0.2);
  auto x = random_tensor<double>(1, 3, 3, 2, rng);
  for (auto& v : x.data) v += v > 0 ? 0.1 : -0.1;  // away from the kink
  check_layer(act, x, rng, "leaky relu");
}

// A CAN in miniature: dilated 3x3 + adaptive BN + leaky ReLU, twice, then
// the 1x1 output layer with bias, under the MSE loss.
template <typename T>
std::unique_ptr<Sequential<T>> tiny_can(unsigned seed) {
  std::mt19937 rng(seed);
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  auto net = std::make_unique<Sequential<T>>();
  net->add(std::make_unique<Conv2d<T>>(ConvConfig{3, 3, 3, 6, 1, 1, false}, "g_conv1", cast(random_values(162, rng))));
  net->add(std::make_unique<AdaptiveBatchNorm<T>>(6, "g_conv1", T(0.9), T(0.3), cast(random_values(6, rng, 0.1))));
  net->add(std::make_unique<LeakyRelu<T>>(T(0.2)));
  net->add(std::make_unique<Conv2d<T>>(ConvConfig{3, 3, 6, 6, 1, 2, false}, "g_conv2", cast(random_values(324, rng, 0.3))));
  net->add(std::make_unique<AdaptiveBatchNorm<T>>(6, "g_conv2", T(1.1), T(0.2), cast(random_values(6, rng, 0.1))));
  net->add(std::make_unique<LeakyRelu<T>>(T(0.2)));
  net->add(std::make_unique<Conv2d<T>>(ConvConfig{1, 1, 6, 3, 1, 1, true}, "g_conv_last", cast(random_values(18, rng)),
                                       cast(random_values(3, rng, 0.1))));
  return net;
}

TEST(LearnerLayers, ANetworkUnderMseHasTheFiniteDifferenceGradient) {
  auto net = tiny_can<double>(6);
  std::mt19937 rng(7);
  const auto x = random_tensor<double>(1, 6, 7, 3, rng, 0, 1);
  check_under_mse(*net, x, random_tensor<double>(1, 6, 7, 3, rng, 0, 1), "network");
}

TEST(LearnerLayers, L1LossGradientMatchesFiniteDifferences) {
  std::mt19937 rng(8);
  auto p = random_tensor<double>(1, 2, 3, 2, rng);
  const auto t = random_tensor<double>(1, 2, 3, 2, rng);
  const auto loss = l1_loss(p, t);
  expect_gradient(p.data, loss.grad.data, [&] { return l1_loss(p, t).value; }, "l1");
}

TEST(LearnerLayers, FloatLayersAgreeWithDoubleAndIgnoreTheThreadCount) {
  auto f = tiny_can<float>(9);
  auto d = tiny_can<double>(9);
  std::mt19937 rng(10);
  const auto xd = random_tensor<double>(2, 37, 29, 3, rng, 0, 1);
  const auto td = random_tensor<double>(2, 37, 29, 3, rng, 0, 1);
  Tensor<float> xf(2, 37, 29, 3), tf(2, 37, 29, 3);
  for (std::size_t i = 0; i < xd.size(); ++i) xf.data[i] = float(xd.data[i]), tf.data[i] = float(td.data[i]);
  const auto run = [&](int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    for (auto* p : f->parameters()) p->zero_grad();
    const auto loss = mse_loss(f->forward(xf), tf);
    f->backward(loss.grad);
    std::vector<float> all;
    for (auto* p : f->parameters()) all.insert(all.end(), p->grad.begin(), p->grad.end());
    return std::make_pair(loss.value, all);
  };
  const auto one = run(1), two = run(2);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.second, two.second);  // bit-identical gradients
  for (auto* p : d->parameters()) p->zero_grad();
  const auto loss = mse_loss(d->forward(xd), td);
  d->backward(loss.grad);
  EXPECT_NEAR(one.first, loss.value, 1e-6 * loss.value);
  std::size_t at = 0;
  for (auto* p : d->parameters()) {
    for (double g : p->grad) {
      EXPECT_NEAR(one.second[at], g, 1e-4 * std::max(1e-3, std::abs(g))) << p->name;
      ++at;
    }
  }
}

// The float convolution runs the vector kernels (forward and d(input) as the
// CPU executor's, d(weights) its own); the double one plain loops.
TEST(LearnerLayers, FloatConvolutionKernelsAgreeWithThePlainDoubleLoops) {
  std::mt19937 rng(11);
  struct Case {
    int k, cin, cout, stride, dilation;
  };
  for (const Case c : {Case{3, 3, 24, 1, 1}, Case{3, 24, 24, 1, 4}, Case{3, 32, 32, 1, 2}, Case{3, 24, 40, 1, 1},
                       Case{1, 24, 3, 1, 1}, Case{5, 8, 16, 1, 1}, Case{3, 16, 8, 2, 1}, Case{3, 24, 24, 2, 2}, Case{3, 13, 32, 1, 64}}) {
    SCOPED_TRACE("k" + std::to_string(c.k) + " " + std::to_string(c.cin) + "->" + std::to_string(c.cout) + " s" +
                 std::to_string(c.stride) + " d" + std::to_string(c.dilation));
    const ConvConfig config{c.k, c.k, c.cin, c.cout, c.stride, c.dilation, true};
    const auto w = random_values(std::size_t(c.k) * c.k * c.cin * c.cout, rng, 0.2);
    const auto b = random_values(c.cout, rng, 0.1);
    Conv2d<double> cd(config, "d", w, b);
    Conv2d<float> cf(config, "f", std::vector<float>(w.begin(), w.end()), std::vector<float>(b.begin(), b.end()));
    const auto xd = random_tensor<double>(2, 19, 23, c.cin, rng);
    Tensor<float> xf(2, 19, 23, c.cin);
    for (std::size_t i = 0; i < xd.size(); ++i) xf.data[i] = float(xd.data[i]);
    const auto yd = cd.forward(xd);
    const auto yf = cf.forward(xf);
    ASSERT_TRUE(yf.same_shape(Tensor<float>(yd.n, yd.h, yd.w, yd.c)));
    for (std::size_t i = 0; i < yd.size(); ++i) ASSERT_NEAR(yf.data[i], yd.data[i], 1e-4) << "forward " << i;
    const auto gd = random_tensor<double>(yd.n, yd.h, yd.w, yd.c, rng);
    Tensor<float> gf(yd.n, yd.h, yd.w, yd.c);
    for (std::size_t i = 0; i < gd.size(); ++i) gf.data[i] = float(gd.data[i]);
    const auto dxd = cd.backward(gd);
    const auto dxf = cf.backward(gf);
    for (std::size_t i = 0; i < dxd.size(); ++i) ASSERT_NEAR(dxf.data[i], dxd.data[i], 1e-4) << "d(input) " << i;
    const auto pd = cd.parameters();
    const auto pf = cf.parameters();
    for (std::size_t k = 0; k < pd.size(); ++k) {
      for (std::size_t i = 0; i < pd[k]->grad.size(); ++i) {
        ASSERT_NEAR(pf[k]->grad[i], pd[k]->grad[i], 1e-3 + 1e-5 * std::abs(pd[k]->grad[i])) << pd[k]->name << " " << i;
      }
    }
  }
}

// The float 4x4 stride-2 transposed convolution runs as four phase
// convolutions on the vector kernels; the double one by its definition.
TEST(LearnerLayers, FloatTransposedConvolutionPhasesAgreeWithThePlainDoubleLoops) {
  std::mt19937 rng(12);
  for (const auto& [cin, cout, h, w, bias] : std::vector<std::tuple<int, int, int, int, bool>>{
           {3, 2, 1, 1, false}, {8, 8, 5, 7, true}, {24, 16, 10, 9, false}, {64, 64, 6, 4, false}}) {
    SCOPED_TRACE(std::to_string(cin) + "->" + std::to_string(cout) + " " + std::to_string(h) + "x" + std::to_string(w));
    const ConvTransposeConfig config{4, cin, cout, 2, 1, bias};
    const auto wv = random_values(std::size_t(16) * cin * cout, rng, 0.2);
    const auto bv = bias ? random_values(cout, rng, 0.1) : std::vector<double>{};
    ConvTranspose2d<double> cd(config, "d", wv, bv);
    ConvTranspose2d<float> cf(config, "f", std::vector<float>(wv.begin(), wv.end()), std::vector<float>(bv.begin(), bv.end()));
    ConvTranspose2d<float> plain(config, "p", std::vector<float>(wv.begin(), wv.end()), std::vector<float>(bv.begin(), bv.end()));
    plain.use_phases(false);
    const auto xd = random_tensor<double>(2, h, w, cin, rng);
    Tensor<float> xf(2, h, w, cin);
    for (std::size_t i = 0; i < xd.size(); ++i) xf.data[i] = float(xd.data[i]);
    const auto yd = cd.forward(xd);
    const auto yf = cf.forward(xf);
    const auto yp = plain.forward(xf);
    ASSERT_EQ(yf.h, 2 * h);
    ASSERT_EQ(yf.w, 2 * w);
    for (std::size_t i = 0; i < yd.size(); ++i) {
      ASSERT_NEAR(yf.data[i], yd.data[i], 1e-4) << "forward " << i;
      ASSERT_NEAR(yp.data[i], yd.data[i], 1e-4) << "plain forward " << i;
    }
    const auto gd = random_tensor<double>(yd.n, yd.h, yd.w, yd.c, rng);
    Tensor<float> gf(yd.n, yd.h, yd.w, yd.c);
    for (std::size_t i = 0; i < gd.size(); ++i) gf.data[i] = float(gd.data[i]);
    const auto dxd = cd.backward(gd);
    const auto dxf = cf.backward(gf);
    for (std::size_t i = 0; i < dxd.size(); ++i) ASSERT_NEAR(dxf.data[i], dxd.data[i], 1e-4) << "d(input) " << i;
    const auto pd = cd.parameters();
    const auto pf = cf.parameters();
    ASSERT_EQ(pd.size(), pf.size());
    for (std::size_t k = 0; k < pd.size(); ++k)
      for (std::size_t i = 0; i < pd[k]->grad.size(); ++i) {
        ASSERT_NEAR(pf[k]->grad[i], pd[k]->grad[i], 1e-3 + 1e-5 * std::abs(pd[k]->grad[i])) << pd[k]->name << " " << i;
      }
  }
}

TEST(LearnerAdam, StepsAsPyTorchDoes) {
  // PyTorch's Adam on one scalar: p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε).
  Parameter<double> p("p", {}, {1.0});
  Adam<double> adam({&p}, {.learning_rate = 0.1});
  double m = 0, v = 0, value = 1.0;
  const double grads[] = {0.5, -0.25, 2.0, 1e-3};
  for (int t = 1; t <= 4; ++t) {
    p.grad[0] = grads[t - 1];
    adam.step();
    m = 0.9 * m + 0.1 * grads[t - 1];
    v = 0.999 * v + 0.001 * grads[t - 1] * grads[t - 1];
    value -= 0.1 / (1 - std::pow(0.9, t)) * m / (std::sqrt(v) / std::sqrt(1 - std::pow(0.999, t)) + 1e-8);
    EXPECT_DOUBLE_EQ(p.value[0], value) << "step " << t;
  }
  // The first step moves by lr whatever the gradient's size.
  Parameter<double> big("big", {}, {0.0});
  Adam<double> first({&big}, {.learning_rate = 0.01});
  big.grad[0] = 1e3;
  first.step();
  EXPECT_NEAR(big.value[0], -0.01, 1e-12);
  EXPECT_EQ(adam.steps(), 4);
  Parameter<double> q("q", {}, {0.0});
  Adam<double> other({&q}, {});
  EXPECT_THROW(other.restore(1, {}, {}), Error);
}

}  // namespace
}  // namespace opforge::learner
