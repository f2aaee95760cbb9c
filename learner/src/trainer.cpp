#include "opforge/learner/trainer.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <map>
#include <set>

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

const std::vector<std::string> kConfigKeys = {"network", "init", "loss", "adam", "schedule", "steps", "crop", "flips",
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
  if (c.network != "can24_an") {
    r.fail(root["network"], "network '" + c.network +
                                "' cannot be trained by this build yet; valid: can24_an (the parameterized and combined "
                                "CAN, Fan et al.'s network and SRCNN follow)");
  }
  if (root["init"]) c.init = r.text(root["init"], "init");
  if (root["loss"]) c.loss = r.text(root["loss"], "loss");
  if (c.loss != "mse" && c.loss != "l1") r.fail(root["loss"], "loss '" + c.loss + "' is invalid; valid: mse, l1");
  if (const auto adam = root["adam"]) {
    r.require_keys(adam, {"learning_rate", "beta1", "beta2", "epsilon"}, "adam");
    if (adam["learning_rate"]) c.adam.learning_rate = r.number(adam["learning_rate"], "adam.learning_rate", 1e-12, 10);
    if (adam["beta1"]) c.adam.beta1 = r.number(adam["beta1"], "adam.beta1", 0, 0.999999);
    if (adam["beta2"]) c.adam.beta2 = r.number(adam["beta2"], "adam.beta2", 0, 0.999999999);
    if (adam["epsilon"]) c.adam.epsilon = r.number(adam["epsilon"], "adam.epsilon", 1e-30, 1);
  }
  if (root["steps"]) c.steps = r.integer(root["steps"], "steps", 1, 1'000'000'000);
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
  if (root["crop"]) c.crop = static_cast<int>(r.integer(root["crop"], "crop", 0, 65536));
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

// An image's channels in the model's order, as a batch of one.
Tensor<float> to_tensor(const Image& rgb, const model::NetworkSpec& spec) {
  Tensor<float> t(1, rgb.rows, rgb.cols, rgb.channels());
  const bool swap = spec.channel_order == model::ChannelOrder::bgr && rgb.channels() == 3;
  for (int y = 0; y < rgb.rows; ++y) {
    const float* s = rgb.ptr<float>(y);
    for (int x = 0; x < rgb.cols; ++x)
      for (int c = 0; c < rgb.channels(); ++c) t.at(0, y, x, c) = s[x * rgb.channels() + (swap ? 2 - c : c)];
  }
  return t;
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
    spec_ = can_spec(config.network);
    start_.emplace(config.init == "identity" ? identity_initialised(spec_) : model::Model::load(config.init));
    if (start_->spec().architecture != spec_.architecture) {
      throw Error("init model '" + config.init + "' is a " + start_->spec().architecture + ", the config trains a " +
                  spec_.architecture);
    }
    spec_ = start_->spec();  // a fine-tuned file's own conventions (channel order, planes)
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
      const auto pair = training_pair(step);
      if (!pair) break;  // every pair is unreadable
      const Tensor<float> x = to_tensor(pair->input, spec_), target = to_tensor(pair->target, spec_);
      const Tensor<float> y = net.forward(x);
      const Loss<float> loss = config_.loss == "l1" ? l1_loss(y, target) : mse_loss(y, target);
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
      const auto& c = pair->crop;
      log_line({{"step", step}, {"key", dataset_.rows()[pair->row].key}, {"crop", {c.x, c.y, c.width, c.height}},
                {"flip", pair->flipped}, {"loss", loss.value}, {"learning_rate", rate}});
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
  // The pair step `step` trains on, cropped and flipped: the epoch's
  // permutation of the training rows, keyed by the seed; a row whose files
  // cannot be read is skipped (and counted) in favour of the next.
  std::optional<Pair> training_pair(std::int64_t step) {
    const std::size_t n = split_.train.size();
    const std::uint64_t epoch = static_cast<std::uint64_t>(step) / n;
    if (epoch != permutation_epoch_ || permutation_.empty()) {
      const CounterRng order(config_.seed, 1000 + epoch);
      permutation_ = split_.train;
      std::vector<std::uint64_t> keys(n);
      for (std::size_t i = 0; i < n; ++i) keys[i] = order.bits(i);
      std::vector<std::size_t> idx(n);
      for (std::size_t i = 0; i < n; ++i) idx[i] = i;
      std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b] || (keys[a] == keys[b] && a < b); });
      for (std::size_t i = 0; i < n; ++i) permutation_[i] = split_.train[idx[i]];
      permutation_epoch_ = epoch;
    }
    const CounterRng draw(config_.seed, 2);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t row = permutation_[(static_cast<std::uint64_t>(step) + k) % n];
      auto pair = load_pair(row);
      if (!pair) continue;
      const std::uint64_t bits = draw.bits(static_cast<std::uint64_t>(step));
      std::optional<cv::Rect> crop;
      if (config_.crop > 0 && (pair->input.rows > config_.crop || pair->input.cols > config_.crop)) {
        const int ch = std::min(config_.crop, pair->input.rows), cw = std::min(config_.crop, pair->input.cols);
        const int y = static_cast<int>(bits % static_cast<std::uint64_t>(pair->input.rows - ch + 1));
        const int x = static_cast<int>((bits >> 24) % static_cast<std::uint64_t>(pair->input.cols - cw + 1));
        pair->input = pair->input(cv::Rect(x, y, cw, ch)).clone();
        pair->target = pair->target(cv::Rect(x, y, cw, ch)).clone();
        crop = cv::Rect(x, y, cw, ch);
      }
      pair->row = row;
      pair->crop = crop.value_or(cv::Rect(0, 0, pair->input.cols, pair->input.rows));
      if (config_.flips && (bits >> 63)) {
        cv::flip(pair->input, pair->input, 1);
        cv::flip(pair->target, pair->target, 1);
        pair->flipped = true;
      }
      return pair;
    }
    return std::nullopt;
  }

  std::optional<Pair> load_pair(std::size_t row) {
    if (unreadable_.count(row)) return std::nullopt;
    const datagen::DatasetRow& r = dataset_.rows()[row];
    try {
      Pair p{read_image(options_.data / r.input_file), read_image(options_.data / r.output_file), row, {}, false};
      if (p.input.size() != p.target.size() || p.input.channels() != 3 || p.target.channels() != 3) {
        throw Error("pair " + r.key + ": input and target differ in size or are not colour images");
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
      const PairScore score = score_pair(m, executor, pair->input, pair->target);
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
  std::vector<std::size_t> permutation_;
  std::uint64_t permutation_epoch_ = 0;
  std::set<std::size_t> unreadable_;
  std::ofstream log_;
};

}  // namespace

TrainSummary train(const TrainConfig& config, const TrainOptions& options) { return Trainer(config, options).run(); }

}  // namespace opforge::learner
