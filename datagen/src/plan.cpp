#include "opforge/datagen/plan.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/sha256.hpp"
#include "opforge/operators/degradations.hpp"

namespace opforge::datagen {
namespace fs = std::filesystem;

namespace {

// Streams of a pair's counter RNG, one per independent use of its seed.
constexpr std::uint64_t kOperatorStream = 0x6f70657261746f72ull;  // "operator"
constexpr std::uint64_t kCropStream = 0x63726f70ull;              // "crop"

std::uint64_t param_stream(const std::string& op, const std::string& param) {
  // FNV-1a of "op/param": fixed forever, so adding a parameter elsewhere never
  // changes the draws of this one.
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : op + "/" + param) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

bool is_image_name(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".npy";
}

// The recorded name of a path built from the recipe's spelling.
std::string spelled(const fs::path& p) { return p.lexically_normal().generic_string(); }

fs::path resolve(const fs::path& base, const fs::path& p) { return p.is_absolute() ? p : base / p; }

void list_directory(const SourceSpec& spec, const fs::path& base, std::vector<std::pair<std::string, fs::path>>& out) {
  const fs::path dir = resolve(base, spec.path);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("source directory '" + dir.string() + "' does not exist");
  std::vector<std::pair<std::string, fs::path>> found;
  const auto add = [&](const fs::directory_entry& e) {
    if (e.is_regular_file() && is_image_name(e.path())) {
      found.emplace_back(spelled(fs::path(spec.path) / e.path().lexically_relative(dir)), e.path());
    }
  };
  try {
    if (spec.recursive) {
      for (const auto& e : fs::recursive_directory_iterator(dir)) add(e);
    } else {
      for (const auto& e : fs::directory_iterator(dir)) add(e);
    }
  } catch (const fs::filesystem_error& e) {
    throw Error("cannot list source directory '" + dir.string() + "': " + e.code().message());
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
}

// Expands a pattern whose components may hold *, ? and [...] (no "**").
void list_glob(const SourceSpec& spec, const fs::path& base, std::vector<std::pair<std::string, fs::path>>& out) {
  const fs::path pattern(spec.path);
  std::vector<std::pair<fs::path, fs::path>> current = {{pattern.is_absolute() ? fs::path("/") : fs::path(),
                                                         pattern.is_absolute() ? fs::path("/") : base}};
  for (const auto& part : pattern.relative_path()) {
    const std::string p = part.string();
    std::vector<std::pair<fs::path, fs::path>> next;
    for (const auto& [spelled_dir, real_dir] : current) {
      if (p.find_first_of("*?[") == std::string::npos) {
        next.emplace_back(spelled_dir / part, real_dir / part);
        continue;
      }
      std::error_code ec;
      if (!fs::is_directory(real_dir.empty() ? "." : real_dir, ec)) continue;
      for (const auto& e : fs::directory_iterator(real_dir.empty() ? "." : real_dir, ec)) {
        const std::string name = e.path().filename().string();
        if (fnmatch(p.c_str(), name.c_str(), FNM_PERIOD) == 0) next.emplace_back(spelled_dir / name, e.path());
      }
    }
    current = std::move(next);
  }
  std::vector<std::pair<std::string, fs::path>> found;
  for (const auto& [s, real] : current) {
    std::error_code ec;
    if (fs::is_regular_file(real, ec) && is_image_name(real)) found.emplace_back(spelled(s), real);
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
}

void list_file(const SourceSpec& spec, const fs::path& base, std::vector<std::pair<std::string, fs::path>>& out) {
  const fs::path file = resolve(base, spec.path);
  std::ifstream in(file);
  if (!in) throw Error("source list '" + file.string() + "' cannot be read");
  const fs::path list_dir = fs::path(spec.path).parent_path();
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find('\0') != std::string::npos) {
      throw Error("source list '" + file.string() + "' line " + std::to_string(number) +
                  " is not text; valid: one image path per line");
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const fs::path entry(line.substr(start));
    // Relative entries are relative to the list file, as in most dataset lists.
    const fs::path spelled_path = entry.is_absolute() ? entry : list_dir / entry;
    out.emplace_back(spelled(spelled_path), resolve(base, spelled_path));
  }
}

}  // namespace

std::vector<SourceImage> list_sources(const std::vector<SourceSpec>& specs, const fs::path& base_dir) {
  std::vector<std::pair<std::string, fs::path>> found;
  for (const auto& spec : specs) {
    const std::size_t before = found.size();
    switch (spec.kind) {
      case SourceSpec::Kind::directory: list_directory(spec, base_dir, found); break;
      case SourceSpec::Kind::glob: list_glob(spec, base_dir, found); break;
      case SourceSpec::Kind::list: list_file(spec, base_dir, found); break;
    }
    if (found.size() == before) {
      throw Error("source '" + spec.path + "' holds no images (.png, .jpg, .jpeg or .npy)");
    }
  }
  std::vector<SourceImage> sources;
  std::set<std::string> seen;
  for (auto& [name, path] : found) {
    if (!seen.insert(name).second) continue;
    Sha256 h;
    h.update(name);
    const auto digest = h.finish();
    std::uint64_t id = 0;
    for (int k = 0; k < 8; ++k) id = (id << 8) | digest[k];
    sources.push_back({.path = path, .name = name, .id = id});
  }
  return sources;
}

SourceSpec source_spec_from_argument(const std::string& argument) {
  std::error_code ec;
  if (fs::is_directory(argument, ec)) return {.kind = SourceSpec::Kind::directory, .path = argument};
  if (argument.find_first_of("*?[") != std::string::npos) return {.kind = SourceSpec::Kind::glob, .path = argument};
  if (fs::is_regular_file(argument, ec)) {
    // One image is a one-image source set (a glob without wildcards).
    if (is_image_name(argument)) return {.kind = SourceSpec::Kind::glob, .path = argument};
    return {.kind = SourceSpec::Kind::list, .path = argument};
  }
  throw Error("--sources '" + argument + "' is neither a directory, an image, a list file nor a glob pattern");
}

std::string zero_padded(std::size_t value, int width) {
  const std::string digits = std::to_string(value);
  return std::string(static_cast<std::size_t>(std::max(0, width - static_cast<int>(digits.size()))), '0') + digits;
}

std::uint64_t pair_seed(std::uint64_t recipe_seed, std::uint64_t source_id, int pair_index) {
  return derive_seed(recipe_seed, source_id, static_cast<std::uint64_t>(pair_index)) >> 11;
}

std::string pair_key(std::size_t source_index, std::size_t source_count, int pair_index, int pairs_per_source) {
  const auto digits = [](std::size_t n) {
    int d = 1;
    while (n >= 10) { n /= 10; ++d; }
    return d;
  };
  const int source_width = std::max(6, digits(source_count > 0 ? source_count - 1 : 0));
  const int pair_width = std::max(2, digits(static_cast<std::size_t>(std::max(pairs_per_source - 1, 0))));
  return zero_padded(source_index, source_width) + "_" + zero_padded(static_cast<std::size_t>(pair_index), pair_width);
}

PairPlan plan_pair(const Recipe& recipe, const SourceImage& source, std::size_t source_index, std::size_t source_count,
                   int pair_index) {
  PairPlan plan;
  plan.source_index = source_index;
  plan.pair_index = pair_index;
  plan.key = pair_key(source_index, source_count, pair_index, recipe.pairs_per_source);
  plan.seed = pair_seed(recipe.seed, source.id, pair_index);

  plan.op = &recipe.operators.front();
  if (recipe.operators.size() > 1) {
    double total = 0;
    for (const auto& o : recipe.operators) total += o.weight;
    const double u = CounterRng(plan.seed, kOperatorStream).uniform(0) * total;
    double acc = 0;
    for (const auto& o : recipe.operators) {
      acc += o.weight;
      plan.op = &o;
      if (u < acc) break;
    }
  }
  const OperatorEntry& entry = *plan.op->entry;
  ParamValues drawn;
  for (const auto& [param, distribution] : plan.op->params) {
    const std::string& name = param;  // a lambda may not capture a structured binding before clang 16
    const auto spec = std::find_if(entry.params.begin(), entry.params.end(), [&](const ParamSpec& s) { return s.name == name; });
    drawn.set(name, draw(distribution, *spec, CounterRng(plan.seed, param_stream(entry.name, name)),
                         static_cast<std::uint64_t>(pair_index)));
  }
  plan.values = entry.validate(drawn);
  return plan;
}

nlohmann::json params_json(const OperatorEntry& entry, const ParamValues& values) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& spec : entry.params) {
    if (!values.contains(spec.name)) continue;
    if (spec.type == ParamType::integer) {
      out[spec.name] = values.integer(spec.name);
    } else if (spec.type == ParamType::real) {
      out[spec.name] = values.number(spec.name);
    } else if (spec.type == ParamType::boolean) {
      out[spec.name] = values.flag(spec.name);
    } else {
      out[spec.name] = values.choice(spec.name);
    }
  }
  return out;
}


std::optional<CropWindow> crop_window(const Recipe& recipe, std::uint64_t seed, int rows, int cols) {
  if (!recipe.crop_width) return std::nullopt;
  const int w = *recipe.crop_width, h = *recipe.crop_height;
  if (cols < w || rows < h) {
    throw Error("the image is " + std::to_string(cols) + "x" + std::to_string(rows) + ", smaller than the crop " +
                std::to_string(w) + "x" + std::to_string(h));
  }
  const CounterRng rng(seed, kCropStream);
  const auto pick = [](double u, int positions) { return std::min(positions - 1, static_cast<int>(u * positions)); };
  return CropWindow{.x = pick(rng.uniform(0), cols - w + 1), .y = pick(rng.uniform(1), rows - h + 1), .width = w, .height = h};
}

PairImages make_pair(const Recipe& recipe, const SourceImage& source, std::size_t source_index,
                     std::size_t source_count, int pair_index, const Image& preprocessed) {
  return make_pair(recipe, plan_pair(recipe, source, source_index, source_count, pair_index), preprocessed);
}

PairImages make_pair(const Recipe& recipe, PairPlan plan, const Image& preprocessed) {
  PairImages pair;
  pair.plan = std::move(plan);
  const OperatorEntry& op = *pair.plan.op->entry;
  Image image = preprocessed;
  pair.crop = crop_window(recipe, pair.plan.seed, image.rows, image.cols);
  if (pair.crop) image = image(cv::Rect(pair.crop->x, pair.crop->y, pair.crop->width, pair.crop->height)).clone();
  OperatorEntry::Pair images = op.pair(image, pair.plan.values, {.seed = pair.plan.seed});
  pair.input = std::move(images.input);
  pair.output = std::move(images.output);
  return pair;
}

Image preprocess_source(const Recipe& recipe, const Image& source) {
  if (!recipe.resize_short_side) return source;
  const int target = *recipe.resize_short_side;
  const int short_side = std::min(source.rows, source.cols);
  if (short_side == target) return source;
  const double scale = static_cast<double>(target) / short_side;
  const double long_side = std::round(std::max(source.rows, source.cols) * scale);
  if (long_side > static_cast<double>(kMaxImageSide)) {
    throw Error("resize_short_side " + std::to_string(target) + " would make this " + std::to_string(source.cols) + "x" +
                std::to_string(source.rows) + " source " + format_value(long_side) + " pixels long; valid: at most " +
                std::to_string(kMaxImageSide) + " on a side");
  }
  const int rows = source.rows == short_side ? target : static_cast<int>(std::lround(source.rows * scale));
  const int cols = source.cols == short_side ? target : static_cast<int>(std::lround(source.cols * scale));
  return resize_bicubic(source, {.width = std::max(cols, 1), .height = std::max(rows, 1)});
}

}  // namespace opforge::datagen
