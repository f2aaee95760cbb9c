#include "opforge/learner/trainer.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/core/params.hpp"
#include "opforge/core/rng.hpp"
#include "opforge/core/safetensors.hpp"
#include "opforge/core/sha256.hpp"
#include "opforge/datagen/dataset.hpp"
#include "opforge/learner/evaluate.hpp"
#include "opforge/learner/network.hpp"
#include "opforge/model/cpu_executor.hpp"

namespace opforge::learner {
namespace fs = std::filesystem;

// ------------------------------------------------------------- the config

namespace {

const std::vector<std::string> kConfigKeys = {"network", "init", "planes", "operators", "loss", "loss_border",
                                              "adam", "schedule", "steps", "crop", "phases", "batch", "flips",
                                              "validation_sources", "validate_every", "checkpoint_every", "seed"};

std::string key_list(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

class ConfigReader {
 public:
  explicit ConfigReader(std::string source) : source_(std::move(source)) {}
  [[noreturn]] void fail(const YAML::Node& node, const std::string& message) const {
    const int line = node.Mark().line;
    throw Error(source_ + (line >= 0 ? ":" + std::to_string(line + 1) : std::string()) + ": " + message);
  }
  void require_keys(const YAML::Node& map, const std::vector<std::string>& valid, const std::string& where) const {
    if (!map.IsMap()) fail(map, where + " must be a mapping of keys to values");
    std::set<std::string> seen;
    for (const auto& item : map) {
      const std::string key = item.first.as<std::string>();
      if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
        fail(item.first, "unknown key '" + key + "' in " + where + "; valid: " + key_list(valid));
      }
      if (!seen.insert(key).second) fail(item.first, "key '" + key + "' is repeated");
    }
  }
  std::string text(const YAML::Node& node, const std::string& key) const {
    if (!node.IsScalar()) fail(node, key + " must be a single value");
    return node.as<std::string>();
  }
  double number(const YAML::Node& node, const std::string& key, double lo, double hi) const {
    double v = 0;
    if (!node.IsScalar() || !parse_number(node.as<std::string>(), v) || v < lo || v > hi) {
      std::ostringstream range;
      range << lo << ".." << hi;
      fail(node, key + " must be a number in " + range.str());
    }
    return v;
  }
  std::int64_t integer(const YAML::Node& node, const std::string& key, std::int64_t lo, std::int64_t hi) const {
    std::uint64_t v = 0;
    if (!node.IsScalar() || !parse_unsigned(node.as<std::string>(), v) || v < std::uint64_t(lo) || v > std::uint64_t(hi)) {
      fail(node, key + " must be a whole number in " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return static_cast<std::int64_t>(v);
  }
  bool boolean(const YAML::Node& node, const std::string& key) const {
    const std::string v = text(node, key);
    if (v == "true") return true;
    if (v == "false") return false;
    fail(node, key + " must be true or false");
  }

 private:
  std::string source_;
};

CropSize parse_crop(const ConfigReader& r, const YAML::Node& node, const std::string& key) {
  if (node.IsSequence()) {
    if (node.size() != 2) r.fail(node, key + " must be a side N, or [lo, hi] for a side drawn per step");
    const int lo = static_cast<int>(r.integer(node[0], key, 1, 65536)), hi = static_cast<int>(r.integer(node[1], key, 1, 65536));
    if (lo > hi) r.fail(node, key + " [lo, hi] needs lo <= hi");
    return {lo, hi};
  }
  const int side = static_cast<int>(r.integer(node, key, 0, 65536));
  return {side, side};
}

}  // namespace

TrainConfig parse_train_config(const std::string& yaml, const std::string& source) {
  TrainConfig c;
  c.text = yaml;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw Error(source + ": not valid YAML: " + e.msg);
  }
  const ConfigReader r(source);
  r.require_keys(root, kConfigKeys, "the training config");
  if (root["network"]) c.network = r.text(root["network"], "network");
  static const std::vector<std::string> kNetworks = {"can24_an", "can32_an_parameterized", "can32_an_combined",
                                                     "srcnn_915", "fan_decoupled", "fan_cheap_tuning"};
  if (std::find(kNetworks.begin(), kNetworks.end(), c.network) == kNetworks.end()) {
    r.fail(root["network"], "network '" + c.network + "' cannot be trained by this build; valid: " + key_list(kNetworks));
  }
  if (root["init"]) c.init = r.text(root["init"], "init");
  if (const auto planes = root["planes"]) {
    if (!planes.IsSequence()) r.fail(planes, "planes must be a list of {param, scale, range}");
    for (const auto& item : planes) {
      r.require_keys(item, {"param", "scale", "range", "values"}, "a plane");
      PlaneConfig plane;
      if (!item["param"]) r.fail(item, "a plane needs param: NAME (the operator parameter it carries)");
      plane.param = r.text(item["param"], "planes.param");
      const std::string scale = item["scale"] ? r.text(item["scale"], "planes.scale") : "linear";
      if (scale != "linear" && scale != "log") r.fail(item["scale"], "planes.scale '" + scale + "' is invalid; valid: linear, log");
      plane.log_scale = scale == "log";
      const auto range = item["range"];
      if (!range || !range.IsSequence() || range.size() != 2) r.fail(item, "a plane needs range: [lo, hi] (the parameter's)");
      plane.lo = r.number(range[0], "planes.range", -1e300, 1e300);
      plane.hi = r.number(range[1], "planes.range", -1e300, 1e300);
      if (!(plane.lo < plane.hi) || (plane.log_scale && !(plane.lo > 0))) {
        r.fail(range, "planes.range needs lo < hi (and lo > 0 on a log scale)");
      }
      if (const auto values = item["values"]) {
        if (!values.IsSequence() || values.size() != 2) r.fail(values, "planes.values must be [min, max]");
        plane.min = r.number(values[0], "planes.values", -1e300, 1e300);
        plane.max = r.number(values[1], "planes.values", -1e300, 1e300);
        if (!(plane.min < plane.max)) r.fail(values, "planes.values needs min < max");
      }
      c.planes.push_back(plane);
    }
  }
  if (const auto operators = root["operators"]) {
    if (!operators.IsSequence() || operators.size() == 0) r.fail(operators, "operators must be a list of operator names");
    for (const auto& item : operators) {
      const std::string name = r.text(item, "operators");
      if (std::find(c.operators.begin(), c.operators.end(), name) != c.operators.end()) {
        r.fail(item, "operator '" + name + "' is listed twice");
      }
      c.operators.push_back(name);
    }
  }
  if (c.network == "can32_an_combined" && !c.planes.empty()) {
    r.fail(root["planes"], "the combined network's planes are its operators (operators: [...]), not parameters");
  }
  if (c.network != "can32_an_combined" && root["operators"]) {
    r.fail(root["operators"], "operators applies to network can32_an_combined");
  }
  const bool fan = c.network == "fan_decoupled" || c.network == "fan_cheap_tuning";
  if (c.network != "can32_an_parameterized" && !fan && root["planes"]) {
    r.fail(root["planes"], "network " + c.network + " has no parameter planes");
  }
  if (fan && c.planes.empty()) {
    r.fail(root, "network " + c.network + " needs planes: [{param, range, values}] (its weight inputs)");
  }
  if (fan && !root["init"]) c.init = "uniform";  // Fan et al.'s networks have no identity start
  if (root["loss"]) c.loss = r.text(root["loss"], "loss");
  if (c.loss != "mse" && c.loss != "l1") r.fail(root["loss"], "loss '" + c.loss + "' is invalid; valid: mse, l1");
  if (root["loss_border"]) c.loss_border = static_cast<int>(r.integer(root["loss_border"], "loss_border", 0, 1024));
  if (const auto adam = root["adam"]) {
    r.require_keys(adam, {"learning_rate", "beta1", "beta2", "epsilon"}, "adam");
    if (adam["learning_rate"]) c.adam.learning_rate = r.number(adam["learning_rate"], "adam.learning_rate", 1e-12, 10);
    if (adam["beta1"]) c.adam.beta1 = r.number(adam["beta1"], "adam.beta1", 0, 0.999999);
    if (adam["beta2"]) c.adam.beta2 = r.number(adam["beta2"], "adam.beta2", 0, 0.999999999);
    if (adam["epsilon"]) c.adam.epsilon = r.number(adam["epsilon"], "adam.epsilon", 1e-30, 1);
  }
  if (const auto phases = root["phases"]) {
    if (root["steps"] || root["crop"]) r.fail(phases, "give phases, or steps and crop, not both");
    if (!phases.IsSequence() || phases.size() == 0) r.fail(phases, "phases must be a list of {steps, crop}");
    c.steps = 0;
    for (const auto& item : phases) {
      r.require_keys(item, {"steps", "crop"}, "a phase");
      if (!item["steps"]) r.fail(item, "a phase needs steps: N");
      Phase phase;
      phase.steps = r.integer(item["steps"], "phases.steps", 1, 1'000'000'000);
      if (item["crop"]) phase.crop = parse_crop(r, item["crop"], "phases.crop");
      c.phases.push_back(phase);
      c.steps += phase.steps;
    }
  } else {
    if (root["steps"]) c.steps = r.integer(root["steps"], "steps", 1, 1'000'000'000);
    Phase phase;
    phase.steps = c.steps;
    if (root["crop"]) phase.crop = parse_crop(r, root["crop"], "crop");
    c.phases.push_back(phase);
  }
  if (const auto schedule = root["schedule"]) {
    r.require_keys(schedule, {"kind", "at", "factor", "final"}, "schedule");
    const std::string kind = schedule["kind"] ? r.text(schedule["kind"], "schedule.kind") : "constant";
    if (kind == "constant") {
      c.schedule.kind = Schedule::Kind::constant;
    } else if (kind == "step") {
      c.schedule.kind = Schedule::Kind::step;
      if (!schedule["at"] || !schedule["at"].IsSequence()) r.fail(schedule, "a step schedule needs at: [STEP, ...]");
      std::int64_t previous = 0;
      for (const auto& item : schedule["at"]) {
        const std::int64_t at = r.integer(item, "schedule.at", 1, c.steps);
        if (at <= previous) r.fail(item, "schedule.at must increase");
        c.schedule.at.push_back(previous = at);
      }
      if (schedule["factor"]) c.schedule.factor = r.number(schedule["factor"], "schedule.factor", 1e-6, 1);
    } else if (kind == "cosine") {
      c.schedule.kind = Schedule::Kind::cosine;
      if (schedule["final"]) c.schedule.final = r.number(schedule["final"], "schedule.final", 0, 10);
    } else {
      r.fail(schedule["kind"], "schedule.kind '" + kind + "' is invalid; valid: constant, step, cosine");
    }
  }
  if (root["batch"]) c.batch = static_cast<int>(r.integer(root["batch"], "batch", 1, 4096));
  if (root["flips"]) c.flips = r.boolean(root["flips"], "flips");
  if (root["validation_sources"]) c.validation_sources = static_cast<std::size_t>(r.integer(root["validation_sources"], "validation_sources", 0, 1'000'000));
  if (root["validate_every"]) c.validate_every = r.integer(root["validate_every"], "validate_every", 0, 1'000'000'000);
  if (root["checkpoint_every"]) c.checkpoint_every = r.integer(root["checkpoint_every"], "checkpoint_every", 0, 1'000'000'000);
  if (root["seed"]) c.seed = static_cast<std::uint64_t>(r.integer(root["seed"], "seed", 0, std::numeric_limits<std::int64_t>::max()));
  return c;
}

double Schedule::rate(double base, std::int64_t step, std::int64_t steps) const {
  switch (kind) {
    case Kind::constant: return base;
    case Kind::step: {
      double r = base;
      for (const auto milestone : at) {
        if (step >= milestone) r *= factor;
      }
      return r;
    }
    case Kind::cosine:
      return final + (base - final) * (1 + std::cos(3.14159265358979323846 * double(step) / double(steps))) / 2;
  }
  return base;
}

TrainConfig load_train_config(const fs::path& path) {
  const auto bytes = read_file(path);
  return parse_train_config(std::string(bytes.begin(), bytes.end()), path.string());
}

fs::path checkpoint_path(const fs::path& out) {
  fs::path p = out;
  p.replace_extension(".checkpoint.safetensors");
  return p;
}

// --------------------------------------------------------------- training

namespace {

std::string config_hash(const TrainConfig& c) {
  return sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(c.text.data()), c.text.size()));
}

// A cv::Mat's values (H×W×C, float) as sample `b` of a batch tensor.
void put_sample(Tensor<float>& t, int b, const cv::Mat& m) {
  const int n = m.cols * m.channels();
  for (int y = 0; y < m.rows; ++y) std::copy_n(m.ptr<float>(y), n, &t.at(b, y, 0, 0));
}

// The interior of a batch, `border` pixels in from every edge.
Tensor<float> interior(const Tensor<float>& t, int border) {
  Tensor<float> out(t.n, t.h - 2 * border, t.w - 2 * border, t.c);
  for (int b = 0; b < t.n; ++b)
    for (int y = 0; y < out.h; ++y)
      std::copy_n(&t.at(b, y + border, border, 0), static_cast<std::size_t>(out.w) * t.c, &out.at(b, y, 0, 0));
  return out;
}

struct Pair {
  Image input, target;
  std::size_t row = 0;
  cv::Rect crop;
  bool flipped = false;
};

class Trainer {
 public:
  Trainer(const TrainConfig& config, const TrainOptions& options)
      : config_(config), options_(options), dataset_(datagen::Dataset::open(options.data)) {
    split_ = datagen::split_by_source(dataset_.rows(), config.validation_sources, config.seed);
    if (split_.train.empty()) throw Error("dataset '" + options.data.string() + "' has no pairs to train on");
    start_.emplace(starting_model());
    spec_ = start_->spec();
    // Every row's planes once, up front: a row of an operator the network
    // has no plane for, or a parameter outside a plane's range, is refused
    // before the first step.
    row_planes_.resize(dataset_.rows().size());
    for (const auto* side : {&split_.train, &split_.validation}) {
      for (const std::size_t i : *side) row_planes_[i] = pair_planes(*start_, dataset_.rows()[i]);
    }
  }

  TrainSummary run() {
    Network net(*start_);
    Adam<float> adam(net.parameters(), config_.adam);
    TrainSummary summary;
    std::int64_t step = 0;
    if (options_.resume) step = resume(net, adam);
    const std::int64_t total = options_.steps.value_or(config_.steps);
    double validation = std::numeric_limits<double>::quiet_NaN();
    open_log(step);
    while (step < total) {
      const auto batch = training_batch(step);
      if (batch.empty()) break;  // every pair is unreadable
      const int h = batch[0].input.rows, w = batch[0].input.cols, n = static_cast<int>(batch.size());
      Tensor<float> x(n, h, w, spec_.input_channels()), target(n, h, w, spec_.image_channels);
      std::vector<std::vector<float>> weight_inputs;
      for (int b = 0; b < n; ++b) {
        put_sample(x, b, model::network_input(*start_, batch[b].input, row_planes_[batch[b].row]));
        put_sample(target, b, model::to_network_order(*start_, batch[b].target));
        weight_inputs.push_back(model::weight_inputs_of(spec_, row_planes_[batch[b].row]));
      }
      if (spec_.weight_inputs() > 0) net.set_weight_inputs(std::move(weight_inputs));
      const Tensor<float> y = net.forward(x);
      const Loss<float> loss = loss_of(y, target);
      if (!std::isfinite(loss.value)) {
        throw Error("step " + std::to_string(step + 1) + ": the loss is not finite; the last checkpoint (" +
                    checkpoint_path(options_.out).string() + ") is kept: lower adam.learning_rate and resume");
      }
      net.backward(loss.grad);
      const double rate = config_.schedule.rate(config_.adam.learning_rate, step, total);
      adam.set_learning_rate(rate);
      adam.step();
      adam.zero_grad();
      ++step;
      summary.last_loss = loss.value;
      log_step(step, batch, loss.value, rate);
      if (config_.validate_every > 0 && step % config_.validate_every == 0) {
        const auto [net_psnr, identity_psnr] = validation_psnr(net);
        validation = net_psnr;
        log_line({{"step", step}, {"validation_psnr_db", net_psnr}, {"identity_psnr_db", identity_psnr}});
      }
      if (options_.progress) options_.progress(step, loss.value, validation);
      const bool stop = options_.stop != nullptr && options_.stop->load();
      if (stop || (config_.checkpoint_every > 0 && step % config_.checkpoint_every == 0)) save_checkpoint(net, adam, step);
      if (stop) {
        summary.interrupted = true;
        break;
      }
    }
    summary.steps = step;
    summary.skipped_pairs = unreadable_.size();
    if (!summary.interrupted) {
      save_checkpoint(net, adam, step);
      model::Model trained = net.to_model();
      auto provenance = start_->provenance();
      provenance["trained_by"] = "opforge train";
      provenance["train_config_sha256"] = config_hash(config_);
      provenance["train_steps"] = std::to_string(step);
      provenance["train_dataset"] = options_.data.string();
      // The split, so that `opforge eval --split val` holds out the same photos.
      provenance["train_validation_sources"] = std::to_string(config_.validation_sources);
      provenance["train_seed"] = std::to_string(config_.seed);
      trained.set_provenance(provenance);
      trained.save(options_.out);
      std::tie(summary.validation_psnr_db, summary.identity_psnr_db) = validation_psnr(net);
      log_line({{"step", step}, {"validation_psnr_db", summary.validation_psnr_db},
                {"identity_psnr_db", summary.identity_psnr_db}, {"final", true}});
    }
    return summary;
  }

  // The log is appended to (a resumed run continues it); the split line
  // starts a fresh one.
  void open_log(std::int64_t step) {
    if (options_.log.empty()) return;
    log_.open(options_.log, step == 0 ? std::ios::trunc : std::ios::app);
    if (!log_) throw Error("cannot write the training log '" + options_.log.string() + "'");
    if (step == 0) {
      nlohmann::json train = nlohmann::json::array(), validation = nlohmann::json::array();
      for (const auto i : split_.train) train.push_back(dataset_.rows()[i].key);
      for (const auto i : split_.validation) validation.push_back(dataset_.rows()[i].key);
      log_line({{"train", train}, {"validation", validation}});
    }
  }

  void log_line(const nlohmann::json& j) {
    if (!log_.is_open()) return;
    log_ << j.dump() << "\n" << std::flush;
    if (!log_) throw Error("cannot write the training log '" + options_.log.string() + "' (disk full?)");
  }

 private:
  // The weights the run starts from, with the config's plane mapping.
  model::Model starting_model() const {
    std::vector<std::string> operators = config_.operators;
    if (config_.network == "can32_an_combined" && operators.empty()) {
      std::set<std::string> seen;
      for (const auto& row : dataset_.rows()) seen.insert(row.op);
      operators.assign(seen.begin(), seen.end());
    }
    std::vector<model::InputPlane> weight_inputs;
    for (const auto& c : config_.planes) weight_inputs.push_back(model::InputPlane::unmapped(c.param));
    model::NetworkSpec spec = network_spec(config_.network, operators, weight_inputs);
    std::optional<model::Model> start;
    if (config_.init == "uniform") {
      start.emplace(uniform_initialised(spec, config_.seed));
    } else if (spec.weight_inputs() > 0 && (config_.init == "identity" || config_.init == "gaussian")) {
      throw Error("init '" + config_.init + "' does not apply to " + spec.architecture + "; valid: uniform, or a model file");
    } else if (config_.init == "identity" && config_.network == "srcnn_915") {
      start.emplace(gaussian_initialised(spec, 0.001, config_.seed, /*identity_path=*/true));
    } else if (config_.init == "identity") {
      start.emplace(identity_initialised(spec));
    } else if (config_.init == "gaussian") {
      start.emplace(gaussian_initialised(spec, 0.001, config_.seed, /*identity_path=*/false));
    } else {
      start.emplace(model::Model::load(config_.init));
      if (start->spec().architecture != spec.architecture) {
        throw Error("init model '" + config_.init + "' is a " + start->spec().architecture + ", the config trains a " +
                    spec.architecture);
      }
    }
    if (config_.planes.empty()) return *start;
    spec = start->spec();  // a fine-tuned file's own conventions (channel order, planes)
    if (config_.planes.size() != spec.planes.size()) {
      throw Error("the config maps " + std::to_string(config_.planes.size()) + " plane(s), network " + spec.architecture +
                  " has " + std::to_string(spec.planes.size()));
    }
    for (std::size_t i = 0; i < spec.planes.size(); ++i) {
      model::InputPlane& plane = spec.planes[i];
      const PlaneConfig& c = config_.planes[i];
      plane.param = c.param;
      plane.log_scale = c.log_scale;
      plane.param_lo = c.lo;
      plane.param_hi = c.hi;
      plane.min = c.min;
      plane.max = c.max;
      std::ostringstream meaning;
      meaning << c.param << " " << c.lo << ".." << c.hi << " (" << (c.log_scale ? "log" : "linear") << " scale) mapped onto "
              << plane.min << ".." << plane.max;
      plane.meaning = meaning.str();
    }
    model::Model mapped(spec, start->weights(), start->source());
    mapped.set_provenance(start->provenance());
    return mapped;
  }

  Loss<float> loss_of(const Tensor<float>& y, const Tensor<float>& target) const {
    const int b = config_.loss_border;
    if (b == 0) return config_.loss == "l1" ? l1_loss(y, target) : mse_loss(y, target);
    if (y.h <= 2 * b || y.w <= 2 * b) {
      throw Error("a " + std::to_string(y.h) + "x" + std::to_string(y.w) + " crop leaves nothing inside loss_border " +
                  std::to_string(b) + "; use larger crops");
    }
    const Tensor<float> yi = interior(y, b), ti = interior(target, b);
    Loss<float> inner = config_.loss == "l1" ? l1_loss(yi, ti) : mse_loss(yi, ti);
    Loss<float> full{inner.value, Tensor<float>(y.n, y.h, y.w, y.c)};
    for (int s = 0; s < y.n; ++s)
      for (int r = 0; r < yi.h; ++r)
        std::copy_n(&inner.grad.at(s, r, 0, 0), static_cast<std::size_t>(yi.w) * y.c, &full.grad.at(s, r + b, b, 0));
    return full;
  }

  void log_step(std::int64_t step, const std::vector<Pair>& batch, double loss, double rate) {
    if (!log_.is_open()) return;
    nlohmann::json keys = nlohmann::json::array(), crops = nlohmann::json::array(), flips = nlohmann::json::array();
    for (const auto& p : batch) {
      keys.push_back(dataset_.rows()[p.row].key);
      crops.push_back({p.crop.x, p.crop.y, p.crop.width, p.crop.height});
      flips.push_back(p.flipped);
    }
    nlohmann::json line = {{"step", step}, {"loss", loss}, {"learning_rate", rate}};
    if (batch.size() == 1) {
      line["key"] = keys[0], line["crop"] = crops[0], line["flip"] = flips[0];
    } else {
      line["keys"] = keys, line["crops"] = crops, line["flips"] = flips;
    }
    log_line(line);
  }

  // The crop side of step `step`: its phase's size, or one drawn from its range.
  int crop_side(std::int64_t step) const {
    std::int64_t end = 0;
    CropSize crop = config_.phases.back().crop;
    for (const auto& phase : config_.phases) {
      end += phase.steps;
      if (step < end) {
        crop = phase.crop;
        break;
      }
    }
    if (crop.lo == crop.hi) return crop.lo;
    const CounterRng side(config_.seed, 3);
    return crop.lo + static_cast<int>(side.bits(static_cast<std::uint64_t>(step)) % static_cast<std::uint64_t>(crop.hi - crop.lo + 1));
  }

  // The order of the training rows in epoch `epoch`: a permutation keyed by
  // the seed and the epoch (the last one is kept).
  const std::vector<std::size_t>& epoch_permutation(std::uint64_t epoch) {
    const std::size_t n = split_.train.size();
    if (epoch != permutation_epoch_ || permutation_.empty()) {
      const CounterRng order(config_.seed, 1000 + epoch);
      std::vector<std::uint64_t> keys(n);
      for (std::size_t k = 0; k < n; ++k) keys[k] = order.bits(k);
      std::vector<std::size_t> idx(n);
      for (std::size_t k = 0; k < n; ++k) idx[k] = k;
      std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b] || (keys[a] == keys[b] && a < b); });
      permutation_.resize(n);
      for (std::size_t k = 0; k < n; ++k) permutation_[k] = split_.train[idx[k]];
      permutation_epoch_ = epoch;
    }
    return permutation_;
  }

  // The pairs step `step` trains on, cropped and flipped. Pair j of the
  // batch is position step·batch + j of the stream; a row whose files cannot
  // be read is skipped (and counted) in favour of the next in its epoch.
  std::vector<Pair> training_batch(std::int64_t step) {
    const std::size_t n = split_.train.size();
    const CounterRng draw(config_.seed, 2);
    std::vector<Pair> batch;
    std::vector<std::uint64_t> bits;
    for (int j = 0; j < config_.batch; ++j) {
      const std::uint64_t i = static_cast<std::uint64_t>(step) * static_cast<std::uint64_t>(config_.batch) + j;
      const std::vector<std::size_t>& order = epoch_permutation(i / n);
      for (std::size_t k = 0; k < n; ++k) {
        const std::size_t row = order[(i + k) % n];
        if (auto pair = load_pair(row)) {
          pair->row = row;
          batch.push_back(std::move(*pair));
          bits.push_back(draw.bits(i));
          break;
        }
      }
      if (batch.size() != static_cast<std::size_t>(j) + 1) return {};
    }
    // One size for the whole batch: the crop side, cut to its smallest image.
    const int side = crop_side(step);
    int h = side > 0 ? side : std::numeric_limits<int>::max(), w = h;
    for (const auto& p : batch) h = std::min(h, p.input.rows), w = std::min(w, p.input.cols);
    for (std::size_t j = 0; j < batch.size(); ++j) {
      Pair& p = batch[j];
      const int y = static_cast<int>(bits[j] % static_cast<std::uint64_t>(p.input.rows - h + 1));
      const int x = static_cast<int>((bits[j] >> 24) % static_cast<std::uint64_t>(p.input.cols - w + 1));
      p.crop = cv::Rect(x, y, w, h);
      // New images, never written in place: the uncropped ones share the cache's pixels.
      if (config_.flips && (bits[j] >> 63)) {
        Image input, target;
        cv::flip(p.input(p.crop), input, 1);
        cv::flip(p.target(p.crop), target, 1);
        p.input = input, p.target = target;
        p.flipped = true;
      } else if (h != p.input.rows || w != p.input.cols) {
        p.input = p.input(p.crop).clone();
        p.target = p.target(p.crop).clone();
      }
    }
    return batch;
  }

  // A pair's decoded images. Decoded pairs stay in memory up to
  // kCacheBytes (the oldest dropped first): a batch of small crops from
  // large photos would otherwise spend its step decoding PNGs. The cache
  // changes only the speed, never which pixels a step sees.
  std::optional<Pair> load_pair(std::size_t row) {
    if (unreadable_.count(row)) return std::nullopt;
    if (const auto hit = cache_.find(row); hit != cache_.end()) {
      // Copies share the pixels; crops and flips below clone before writing.
      return Pair{hit->second.first, hit->second.second, row, {}, false};
    }
    const datagen::DatasetRow& r = dataset_.rows()[row];
    try {
      Pair p{read_image(options_.data / r.input_file), read_image(options_.data / r.output_file), row, {}, false};
      if (p.input.size() != p.target.size() || p.input.channels() != spec_.image_channels ||
          p.target.channels() != spec_.image_channels) {
        throw Error("pair " + r.key + ": input and target differ in size or do not have " +
                    std::to_string(spec_.image_channels) + " channel(s)");
      }
      const std::size_t bytes = 2 * p.input.total() * p.input.elemSize();
      while (!cache_order_.empty() && cache_bytes_ + bytes > kCacheBytes) {
        const auto old = cache_.find(cache_order_.front());
        cache_bytes_ -= 2 * old->second.first.total() * old->second.first.elemSize();
        cache_.erase(old);
        cache_order_.erase(cache_order_.begin());
      }
      if (bytes <= kCacheBytes) {
        cache_.emplace(row, std::make_pair(p.input, p.target));
        cache_order_.push_back(row);
        cache_bytes_ += bytes;
      }
      return p;
    } catch (const Error&) {
      unreadable_.insert(row);
      return std::nullopt;
    }
  }

  // Mean PSNR over the held-out pairs of the network, and of the input itself.
  std::pair<double, double> validation_psnr(Network& net) {
    if (split_.validation.empty()) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
    const model::Model m = net.to_model();
    model::CpuExecutor executor;
    double sum = 0, identity = 0;
    int count = 0;
    for (const std::size_t row : split_.validation) {
      const auto pair = load_pair(row);
      if (!pair) continue;
      const PairScore score = score_pair(m, executor, pair->input, pair->target, row_planes_[row],
                                         pair_metric(dataset_.rows()[row], pair->input.channels()));
      sum += score.psnr;
      identity += score.identity_psnr;
      ++count;
    }
    if (count == 0) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
    return {sum / count, identity / count};
  }

  void save_checkpoint(Network& net, const Adam<float>& adam, std::int64_t step) {
    std::map<std::string, opforge::Tensor> tensors;  // safetensors entries, not learner tensors
    const auto& params = net.parameters();
    for (std::size_t k = 0; k < params.size(); ++k) {
      const Parameter<float>& p = *params[k];
      tensors[p.name] = opforge::Tensor::f32(p.shape, p.value);
      tensors["adam.m/" + p.name] = opforge::Tensor::f32(p.shape, adam.first_moments()[k]);
      tensors["adam.v/" + p.name] = opforge::Tensor::f32(p.shape, adam.second_moments()[k]);
    }
    const std::int64_t steps[] = {step, adam.steps()};
    tensors["trainer.step"] = opforge::Tensor::i64({2}, steps);
    auto metadata = model::spec_metadata(spec_);
    metadata["opforge_checkpoint"] = "1";
    metadata["train_config_sha256"] = config_hash(config_);
    // Written whole to a temporary and renamed: a full disk leaves the
    // previous checkpoint as it was.
    write_file_atomic(checkpoint_path(options_.out), encode_safetensors(tensors, metadata));
  }

  std::int64_t resume(Network& net, Adam<float>& adam) {
    const fs::path path = checkpoint_path(options_.out);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      throw Error("--resume: there is no checkpoint '" + path.string() + "' to continue from");
    }
    const SafeTensors st = SafeTensors::load(path);
    const auto hash = st.metadata().find("train_config_sha256");
    if (hash == st.metadata().end() || hash->second != config_hash(config_)) {
      throw Error("--resume: checkpoint '" + path.string() +
                  "' was written with another training config; use the same config, or start again without --resume");
    }
    std::vector<std::vector<float>> m, v;
    for (auto* p : net.parameters()) {
      p->value = st.read_f32(p->name);
      m.push_back(st.read_f32("adam.m/" + p->name));
      v.push_back(st.read_f32("adam.v/" + p->name));
      if (p->value.size() != p->grad.size()) throw Error("--resume: checkpoint tensor '" + p->name + "' has the wrong size");
    }
    const auto steps = st.read_i64("trainer.step");
    if (steps.size() != 2 || steps[0] < 0) throw Error("--resume: checkpoint '" + path.string() + "' has no step count");
    adam.restore(steps[1], std::move(m), std::move(v));
    return steps[0];
  }

  TrainConfig config_;
  TrainOptions options_;
  datagen::Dataset dataset_;
  datagen::Split split_;
  model::NetworkSpec spec_;
  std::optional<model::Model> start_;  // the weights the run starts from
  std::vector<std::vector<float>> row_planes_;  // each row's constant planes
  std::vector<std::size_t> permutation_;
  std::uint64_t permutation_epoch_ = 0;
  std::set<std::size_t> unreadable_;
  static constexpr std::size_t kCacheBytes = std::size_t(1) << 30;
  std::map<std::size_t, std::pair<Image, Image>> cache_;  // row → decoded input, target
  std::vector<std::size_t> cache_order_;                  // rows, oldest first
  std::size_t cache_bytes_ = 0;
  std::ofstream log_;
};

}  // namespace

TrainSummary train(const TrainConfig& config, const TrainOptions& options) { return Trainer(config, options).run(); }

}  // namespace opforge::learner
