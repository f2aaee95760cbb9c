#include "opforge/datagen/recipe.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/sha256.hpp"

namespace opforge::datagen {
namespace fs = std::filesystem;

std::string_view to_string(Distribution::Kind kind) {
  switch (kind) {
    case Distribution::Kind::fixed: return "fixed";
    case Distribution::Kind::log_uniform: return "log_uniform";
    case Distribution::Kind::uniform: return "uniform";
    case Distribution::Kind::int_uniform: return "int_uniform";
    case Distribution::Kind::choice: return "choice";
    case Distribution::Kind::sweep: return "sweep";
  }
  return "?";
}

std::string_view to_string(OutputFormat format) {
  switch (format) {
    case OutputFormat::png8: return "png8";
    case OutputFormat::png16: return "png16";
    case OutputFormat::npy: return "npy";
  }
  return "?";
}

std::string_view file_extension(OutputFormat format) { return format == OutputFormat::npy ? ".npy" : ".png"; }

namespace {

// Every error of one recipe goes through here: "FILE:LINE: message".
class RecipeReader {
 public:
  explicit RecipeReader(fs::path file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& message) const {
    const int line = node.Mark().line;
    throw Error(file_.string() + (line >= 0 ? ":" + std::to_string(line + 1) : std::string()) + ": " + message);
  }
  [[noreturn]] void fail_file(const std::string& message) const { throw Error(file_.string() + ": " + message); }

  // yaml-cpp keeps both entries of a repeated key and answers lookups with the
  // first: a repeated key anywhere in the recipe is an error, not a silent choice.
  void require_unique_keys(const YAML::Node& node) const {
    if (node.IsSequence()) {
      for (const auto& item : node) require_unique_keys(item);
    } else if (node.IsMap()) {
      std::map<std::string, int> seen;
      for (const auto& item : node) {
        const std::string key = item.first.IsScalar() ? item.first.as<std::string>() : std::string();
        if (!item.first.IsScalar()) fail(item.first, "a key must be a single value");
        const auto [at, fresh] = seen.emplace(key, item.first.Mark().line + 1);
        if (!fresh) fail(item.first, "key '" + key + "' is repeated (first at line " + std::to_string(at->second) + ")");
        require_unique_keys(item.second);
      }
    }
  }

  // Rejects keys outside `valid` (typos), naming the valid ones.
  void require_keys(const YAML::Node& map, const std::vector<std::string>& valid, const std::string& where) const {
    if (!map.IsMap()) fail(map, where + " must be a mapping of keys to values");
    for (const auto& item : map) {
      const std::string key = item.first.as<std::string>();
      if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
        fail(item.first, "unknown key '" + key + "' in " + where + "; valid: " + join(valid));
      }
    }
  }

  std::string scalar(const YAML::Node& node, const std::string& what) const {
    if (!node.IsScalar()) fail(node, what + " must be a single value");
    return node.as<std::string>();
  }

  // A string in YAML's core schema: quoted, or a plain scalar that does not
  // resolve to a number, a boolean or null.
  std::string text(const YAML::Node& node, const std::string& what) const {
    if (node.IsNull()) fail(node, what + " is empty; valid: text");
    if (!node.IsScalar()) fail(node, what + " must be text, not a list or mapping");
    const std::string value = node.as<std::string>();
    static const std::set<std::string> non_strings = {"true", "True", "TRUE", "false", "False", "FALSE",
                                                      "null", "Null", "NULL", "~"};
    double number = 0;
    if (node.Tag() != "!" && (non_strings.count(value) || parse_number(value, number))) {
      fail(node, what + " '" + value + "' is not text; valid: text (quote it to keep it)");
    }
    return value;
  }

  double number(const YAML::Node& node, const std::string& what) const {
    double v;
    if (!node.IsScalar() || !parse_number(node.as<std::string>(), v)) {
      fail(node, what + " must be a finite number, not '" + (node.IsScalar() ? node.as<std::string>() : "a list/map") +
                     "'");
    }
    return v;
  }

  std::int64_t integer(const YAML::Node& node, const std::string& what, std::int64_t lo, std::int64_t hi) const {
    const double v = number(node, what);
    if (v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi)) {
      fail(node, what + " = " + node.as<std::string>() + " is invalid; valid: an integer in " + std::to_string(lo) +
                     ".." + std::to_string(hi));
    }
    return static_cast<std::int64_t>(v);
  }

  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
    return out;
  }

 private:
  fs::path file_;
};

std::uint64_t recipe_seed(const RecipeReader& r, const YAML::Node& node) {
  try {
    return parse_seed(r.scalar(node, "seed"), "seed");
  } catch (const Error& e) {
    r.fail(node, e.what());
  }
}

SourceSpec parse_source(const RecipeReader& r, const YAML::Node& node) {
  if (node.IsScalar()) return {.kind = SourceSpec::Kind::directory, .path = node.as<std::string>()};
  r.require_keys(node, {"directory", "glob", "list", "recursive"}, "a source");
  SourceSpec s;
  int kinds = 0;
  if (node["directory"]) { s = {.kind = SourceSpec::Kind::directory, .path = r.scalar(node["directory"], "directory")}; ++kinds; }
  if (node["glob"]) { s = {.kind = SourceSpec::Kind::glob, .path = r.scalar(node["glob"], "glob")}; ++kinds; }
  if (node["list"]) { s = {.kind = SourceSpec::Kind::list, .path = r.scalar(node["list"], "list")}; ++kinds; }
  if (kinds != 1) r.fail(node, "a source needs exactly one of: directory, glob, list");
  if (node["recursive"]) {
    if (s.kind != SourceSpec::Kind::directory) r.fail(node["recursive"], "'recursive' applies to a directory source only");
    const std::string v = r.scalar(node["recursive"], "recursive");
    if (v != "true" && v != "false") r.fail(node["recursive"], "recursive = " + v + " is invalid; valid: true, false");
    s.recursive = v == "true";
  }
  if (s.path.empty()) r.fail(node, "a source path must not be empty");
  return s;
}

// One parameter value, parsed and checked by the registry's single
// validation path (resolve_params); its message gains the file and line.
ParamValue parse_value(const RecipeReader& r, const YAML::Node& node, const OperatorEntry& op, const ParamSpec& spec) {
  const std::string text = r.scalar(node, op.name + " parameter '" + spec.name + "'");
  try {
    return resolve_params(op.name, std::span(&spec, 1), {{spec.name, text}}).all().at(spec.name);
  } catch (const Error& e) {
    r.fail(node, e.what());
  }
}

Distribution parse_distribution(const RecipeReader& r, const YAML::Node& node, const OperatorEntry& op,
                                const ParamSpec& spec) {
  const std::string where = op.name + " parameter '" + spec.name + "'";
  if (!node.IsMap()) return {.kind = Distribution::Kind::fixed, .values = {parse_value(r, node, op, spec)}};

  static const std::map<std::string, Distribution::Kind> kinds = {
      {"log_uniform", Distribution::Kind::log_uniform}, {"uniform", Distribution::Kind::uniform},
      {"int_uniform", Distribution::Kind::int_uniform}, {"choice", Distribution::Kind::choice},
      {"sweep", Distribution::Kind::sweep}};
  r.require_keys(node, {"log_uniform", "uniform", "int_uniform", "choice", "sweep", "weights"}, where);
  Distribution d;
  YAML::Node body;
  int count = 0;
  for (const auto& [key, kind] : kinds) {
    if (node[key]) { d.kind = kind; body = node[key]; ++count; }
  }
  if (count != 1) r.fail(node, where + " needs exactly one of: log_uniform, uniform, int_uniform, choice, sweep");
  if (node["weights"] && d.kind != Distribution::Kind::choice) r.fail(node["weights"], "'weights' applies to choice only");
  if (!body.IsSequence() || body.size() == 0) r.fail(body, where + ": " + std::string(to_string(d.kind)) + " takes a list");

  const bool numeric = spec.type == ParamType::real || spec.type == ParamType::integer;
  if (spec.type == ParamType::text) r.fail(node, where + " is free text and can only be fixed, not sampled");

  if (d.kind == Distribution::Kind::choice || d.kind == Distribution::Kind::sweep) {
    for (const auto& item : body) d.values.push_back(parse_value(r, item, op, spec));
    if (node["weights"]) {
      const YAML::Node w = node["weights"];
      if (!w.IsSequence() || w.size() != body.size()) r.fail(w, where + ": weights must list one weight per choice");
      double total = 0;
      for (const auto& item : w) {
        const double v = r.number(item, "a weight");
        if (v < 0) r.fail(item, "weight " + item.as<std::string>() + " is invalid; valid: ≥ 0");
        d.weights.push_back(v);
        total += v;
      }
      if (!(total > 0)) r.fail(w, where + ": the weights must not all be 0");
    }
    return d;
  }

  if (!numeric) r.fail(node, where + " takes one of " + spec.range_text() + "; sample it with choice or sweep");
  if (body.size() != 2) r.fail(body, where + ": " + std::string(to_string(d.kind)) + " takes [low, high]");
  d.lo = std::get<double>(parse_value(r, body[0], op, spec));
  d.hi = std::get<double>(parse_value(r, body[1], op, spec));
  if (d.lo > d.hi) r.fail(body, where + ": low " + body[0].as<std::string>() + " exceeds high " + body[1].as<std::string>());
  if (!spec.covers(d.lo, d.hi)) {
    r.fail(body, where + ": the range [" + body[0].as<std::string>() + ", " + body[1].as<std::string>() +
                     "] holds values outside " + spec.range_text() + "; sample it with choice or sweep");
  }
  if (d.kind == Distribution::Kind::log_uniform && !(d.lo > 0)) {
    r.fail(body, where + ": log_uniform needs low > 0");
  }
  if (d.kind == Distribution::Kind::int_uniform && spec.type != ParamType::integer) {
    r.fail(node, where + " is real-valued; int_uniform is for integer parameters (use uniform or log_uniform)");
  }
  return d;
}

OperatorChoice parse_operator(const RecipeReader& r, const YAML::Node& node) {
  r.require_keys(node, {"name", "weight", "params"}, "an operator");
  if (!node["name"]) r.fail(node, "an operator needs a 'name' (see `opforge list`)");
  OperatorChoice choice;
  try {
    choice.entry = &find_operator(r.scalar(node["name"], "operator name"));
  } catch (const Error& e) {
    r.fail(node["name"], e.what());
  }
  const OperatorEntry& op = *choice.entry;
  if (node["weight"]) {
    choice.weight = r.number(node["weight"], "weight");
    if (!(choice.weight > 0)) r.fail(node["weight"], "weight " + node["weight"].as<std::string>() + " is invalid; valid: > 0");
  }
  if (node["params"]) {
    const YAML::Node params = node["params"];
    if (!params.IsMap()) r.fail(params, op.name + ": params must map parameter names to values or distributions");
    std::vector<std::string> valid;
    for (const auto& spec : op.params) valid.push_back(spec.name);
    for (const auto& item : params) {
      const std::string name = item.first.as<std::string>();
      const auto spec = std::find_if(op.params.begin(), op.params.end(), [&](const ParamSpec& s) { return s.name == name; });
      if (spec == op.params.end()) {
        r.fail(item.first, "'" + name + "' is not a parameter of " + op.name + "; valid: " + RecipeReader::join(valid));
      }
      choice.params.emplace_back(name, parse_distribution(r, item.second, op, *spec));
    }
  }
  for (const auto& spec : op.params) {
    const bool given = std::any_of(choice.params.begin(), choice.params.end(),
                                   [&](const auto& p) { return p.first == spec.name; });
    if (spec.required && !given) {
      r.fail(node, op.name + ": parameter '" + spec.name + "' is required; valid: " + spec.range_text());
    }
  }
  return choice;
}

}  // namespace

Recipe parse_recipe(const std::string& text, const fs::path& file) {
  const RecipeReader r(file);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(file.string() + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  if (!root.IsMap()) r.fail_file("a recipe is a YAML mapping (name, seed, sources, operators, …)");
  r.require_unique_keys(root);
  r.require_keys(root,
                 {"name", "description", "seed", "sources", "max_pixels", "preprocess", "pairs_per_source", "operators",
                  "output"},
                 "the recipe");
  if (root["description"]) r.text(root["description"], "description");

  Recipe recipe;
  recipe.file = file;
  recipe.text = text;
  recipe.sha256 = sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  recipe.base_dir = file.has_parent_path() ? file.parent_path() : fs::path(".");

  if (!root["name"]) r.fail_file("missing 'name' (letters, digits, '_' and '-')");
  recipe.name = r.scalar(root["name"], "name");
  if (recipe.name.empty() || recipe.name.size() > 100 ||
      !std::all_of(recipe.name.begin(), recipe.name.end(),
                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; })) {
    r.fail(root["name"], "name '" + recipe.name + "' is invalid; valid: 1–100 letters, digits, '_' or '-'");
  }
  if (!root["seed"]) r.fail_file("missing 'seed' (an integer; every pair's seed derives from it)");
  recipe.seed = recipe_seed(r, root["seed"]);

  if (!root["sources"]) r.fail_file("missing 'sources' (a directory, glob or list file of images)");
  const YAML::Node sources = root["sources"];
  if (sources.IsSequence()) {
    if (sources.size() == 0) r.fail(sources, "sources must not be empty");
    for (const auto& s : sources) recipe.sources.push_back(parse_source(r, s));
  } else {
    recipe.sources.push_back(parse_source(r, sources));
  }

  if (root["max_pixels"]) {
    recipe.limits.max_pixels = static_cast<std::uint64_t>(
        r.integer(root["max_pixels"], "max_pixels", 1, static_cast<std::int64_t>(kMaxImageSide * kMaxImageSide)));
  }

  if (root["preprocess"]) {
    const YAML::Node pre = root["preprocess"];
    r.require_keys(pre, {"resize_short_side", "crop"}, "preprocess");
    if (pre["resize_short_side"]) {
      recipe.resize_short_side = static_cast<int>(r.integer(pre["resize_short_side"], "resize_short_side", 1, 65536));
    }
    if (pre["crop"]) {
      const YAML::Node crop = pre["crop"];
      if (crop.IsSequence()) {
        if (crop.size() != 2) r.fail(crop, "crop takes a size or [width, height]");
        recipe.crop_width = static_cast<int>(r.integer(crop[0], "crop width", 1, 65536));
        recipe.crop_height = static_cast<int>(r.integer(crop[1], "crop height", 1, 65536));
      } else {
        recipe.crop_width = recipe.crop_height = static_cast<int>(r.integer(crop, "crop", 1, 65536));
      }
    }
  }

  if (root["pairs_per_source"]) {
    recipe.pairs_per_source = static_cast<int>(r.integer(root["pairs_per_source"], "pairs_per_source", 1, 100000));
  }

  if (!root["operators"]) r.fail_file("missing 'operators' (a list of {name, weight, params}; see `opforge list`)");
  const YAML::Node ops = root["operators"];
  if (!ops.IsSequence() || ops.size() == 0) r.fail(ops, "operators must be a non-empty list of {name, weight, params}");
  for (const auto& op : ops) recipe.operators.push_back(parse_operator(r, op));

  if (root["output"]) {
    const YAML::Node out = root["output"];
    r.require_keys(out, {"format", "webdataset"}, "output");
    if (out["format"]) {
      const std::string f = r.scalar(out["format"], "format");
      if (f == "png8") recipe.format = OutputFormat::png8;
      else if (f == "png16") recipe.format = OutputFormat::png16;
      else if (f == "npy") recipe.format = OutputFormat::npy;
      else r.fail(out["format"], "format '" + f + "' is invalid; valid: png8, png16, npy");
    }
    if (out["webdataset"]) {
      const YAML::Node wds = out["webdataset"];
      if (wds.IsScalar() && (wds.as<std::string>() == "true" || wds.as<std::string>() == "false")) {
        if (wds.as<std::string>() == "true") recipe.webdataset_shard_pairs = 1000;
      } else {
        r.require_keys(wds, {"shard_pairs"}, "webdataset");
        recipe.webdataset_shard_pairs =
            wds["shard_pairs"] ? static_cast<int>(r.integer(wds["shard_pairs"], "shard_pairs", 1, 10000000)) : 1000;
      }
    }
  }
  return recipe;
}

Recipe load_recipe(const fs::path& file) {
  const std::vector<std::uint8_t> bytes = read_file(file);
  return parse_recipe(std::string(bytes.begin(), bytes.end()), file);
}

ParamValue draw(const Distribution& d, const ParamSpec& spec, const CounterRng& rng, std::uint64_t pair_index) {
  const bool integer = spec.type == ParamType::integer;
  const auto finish = [&](double v) -> ParamValue {
    v = std::clamp(v, d.lo, d.hi);  // guards exp/log rounding at the ends
    return integer ? std::round(v) : v;
  };
  switch (d.kind) {
    case Distribution::Kind::fixed:
      return d.values.front();
    case Distribution::Kind::sweep:
      return d.values[pair_index % d.values.size()];
    case Distribution::Kind::uniform:
      return finish(d.lo + (d.hi - d.lo) * rng.uniform(0));
    case Distribution::Kind::log_uniform: {
      const double a = std::log(d.lo), b = std::log(d.hi);
      return finish(std::exp(a + (b - a) * rng.uniform(0)));
    }
    case Distribution::Kind::int_uniform: {
      const double n = d.hi - d.lo + 1;
      return std::min(d.hi, d.lo + std::floor(rng.uniform(0) * n));
    }
    case Distribution::Kind::choice: {
      if (d.weights.empty()) {
        const auto k = static_cast<std::size_t>(rng.uniform(0) * static_cast<double>(d.values.size()));
        return d.values[std::min(k, d.values.size() - 1)];
      }
      double total = 0;
      for (double w : d.weights) total += w;
      const double u = rng.uniform(0) * total;
      double acc = 0;
      for (std::size_t i = 0; i < d.values.size(); ++i) {
        acc += d.weights[i];
        if (u < acc) return d.values[i];
      }
      for (std::size_t i = d.values.size(); i-- > 0;) {
        if (d.weights[i] > 0) return d.values[i];
      }
      return d.values.back();
    }
  }
  return d.values.front();
}

}  // namespace opforge::datagen
