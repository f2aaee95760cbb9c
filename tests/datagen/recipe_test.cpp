// Recipe parsing and validation, parameter sampling, source listing, plans.

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "datagen_fixtures.hpp"
#include "opforge/core/error.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/plan.hpp"
#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {
namespace {
namespace fs = std::filesystem;

const std::string kMinimal =
    "name: t\n"                       // 1
    "seed: 1\n"                       // 2
    "sources: sources\n"              // 3
    "pairs_per_source: 2\n"           // 4
    "operators:\n"                    // 5
    "  - name: l0_smooth\n"           // 6
    "    params:\n"                   // 7
    "      lambda: 0.02\n";           // 8

// Parses `text` and expects an Error whose message has every fragment.
void expect_recipe_error(const std::string& label, const std::string& text, const std::vector<std::string>& fragments) {
  try {
    parse_recipe(text, "dir/recipe.yaml");
    ADD_FAILURE() << label << ": no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << label << ": more than one line: " << what;
    for (const auto& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << label << ": '" << f << "' not in: " << what;
  }
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(Recipe, MinimalParses) {
  const Recipe r = parse_recipe(kMinimal, "dir/recipe.yaml");
  EXPECT_EQ(r.name, "t");
  EXPECT_EQ(r.seed, 1u);
  EXPECT_EQ(r.pairs_per_source, 2);
  EXPECT_EQ(r.base_dir, fs::path("dir"));
  ASSERT_EQ(r.operators.size(), 1u);
  EXPECT_EQ(r.operators[0].entry->name, "l0_smooth");
  EXPECT_EQ(r.format, OutputFormat::png8);
  EXPECT_FALSE(r.webdataset_shard_pairs.has_value());
  EXPECT_EQ(r.sha256.size(), 64u);
}

TEST(Recipe, EveryShippedManifestIsValid) {
  int count = 0;
  for (const auto& e : fs::directory_iterator(fs::path(OPFORGE_SOURCE_DIR) / "manifests")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    const Recipe r = load_recipe(e.path());
    EXPECT_FALSE(r.operators.empty());
    ++count;
  }
  EXPECT_GE(count, 8);
}

TEST(Recipe, ErrorsNameFileLineAndValidValues) {
  expect_recipe_error("unknown operator", replace(kMinimal, "l0_smooth", "l0_smoth"),
                      {"dir/recipe.yaml:6:", "l0_smoth", "l0_smooth", "wls_smooth"});
  expect_recipe_error("unknown parameter", replace(kMinimal, "lambda: 0.02", "lamda: 0.02"),
                      {"dir/recipe.yaml:8:", "'lamda'", "valid: lambda, kappa"});
  expect_recipe_error("typo'd top-level key", replace(kMinimal, "pairs_per_source", "pairs_per_sorce"),
                      {"dir/recipe.yaml:4:", "pairs_per_sorce", "valid:", "pairs_per_source"});
  expect_recipe_error("fixed value out of range", replace(kMinimal, "lambda: 0.02", "lambda: -1"),
                      {"dir/recipe.yaml:8:", "out of range", "valid:"});
  expect_recipe_error("range outside the valid one", replace(kMinimal, "lambda: 0.02", "lambda: {log_uniform: [0.002, 20]}"),
                      {"dir/recipe.yaml:8:", "20", "out of range", "valid:"});
  expect_recipe_error("log of zero", replace(kMinimal, "lambda: 0.02", "kappa: {log_uniform: [0, 2]}"),
                      {"dir/recipe.yaml:8:"});
  expect_recipe_error("reversed range", replace(kMinimal, "lambda: 0.02", "lambda: {uniform: [0.2, 0.02]}"),
                      {"dir/recipe.yaml:8:", "exceeds"});
  expect_recipe_error("int_uniform on a real parameter", replace(kMinimal, "lambda: 0.02", "lambda: {int_uniform: [0.01, 0.1]}"),
                      {"dir/recipe.yaml:8:", "int_uniform is for integer parameters"});
  expect_recipe_error("unknown sampler", replace(kMinimal, "lambda: 0.02", "lambda: {loguniform: [0.01, 0.1]}"),
                      {"dir/recipe.yaml:8:", "loguniform", "log_uniform, uniform, int_uniform, choice, sweep"});
  expect_recipe_error("bad choice value",
                      replace(replace(kMinimal, "l0_smooth", "rtv_smooth"), "lambda: 0.02", "solver: {choice: [pcg, lu]}"),
                      {"dir/recipe.yaml:8:", "'lu'", "pcg | direct"});
  expect_recipe_error("bad format", kMinimal + "output:\n  format: tiff\n", {"dir/recipe.yaml:10:", "png8, png16, npy"});
  expect_recipe_error("missing seed", replace(kMinimal, "seed: 1\n", ""), {"dir/recipe.yaml", "missing 'seed'"});
  expect_recipe_error("negative pairs", replace(kMinimal, "pairs_per_source: 2", "pairs_per_source: 0"),
                      {"dir/recipe.yaml:4:", "1..100000"});
  expect_recipe_error("bad name", replace(kMinimal, "name: t", "name: a b"), {"dir/recipe.yaml:1:", "letters, digits"});
  expect_recipe_error("not YAML", "name: [unclosed\n", {"dir/recipe.yaml:", "not valid YAML"});
  expect_recipe_error("non-integer for integer parameter",
                      replace(replace(kMinimal, "l0_smooth", "jpeg"), "lambda: 0.02", "quality: 20.5"),
                      {"dir/recipe.yaml:8:", "not an integer", "1..100"});
  // Text parameters are checked when the recipe is read, not pair by pair.
  expect_recipe_error("malformed fixed text value",
                      replace(replace(kMinimal, "l0_smooth", "dehaze_nonlocal"), "lambda: 0.02", "airlight: 2,2,2"),
                      {"dir/recipe.yaml:8:", "'airlight' = '2,2,2' is invalid", "valid: auto | r,g,b"});
  expect_recipe_error("missing direction table",
                      replace(replace(kMinimal, "l0_smooth", "dehaze_nonlocal"), "lambda: 0.02", "directions: /no/such.txt"),
                      {"dir/recipe.yaml:8:", "'directions' = '/no/such.txt' is invalid (no such file)"});
  expect_recipe_error("required parameter missing",
                      replace(replace(kMinimal, "l0_smooth", "style_transfer"), "lambda: 0.02", "iterations: 2"),
                      {"dir/recipe.yaml:6:", "parameter 'style' is required"});
  expect_recipe_error("repeated key", replace(kMinimal, "seed: 1\n", "seed: 1\nname: u\n"),
                      {"dir/recipe.yaml:3:", "key 'name' is repeated (first at line 1)"});
  expect_recipe_error("repeated parameter", replace(kMinimal, "lambda: 0.02", "lambda: 0.02\n      lambda: 0.03"),
                      {"dir/recipe.yaml:9:", "key 'lambda' is repeated (first at line 8)"});
  expect_recipe_error("description as a list", kMinimal + "description: [a, b]\n",
                      {"dir/recipe.yaml:9:", "description must be text"});
  expect_recipe_error("description as a number", kMinimal + "description: 42\n",
                      {"dir/recipe.yaml:9:", "description '42' is not text"});
  EXPECT_EQ(parse_recipe(kMinimal + "description: \"42\"\n", "r.yaml").name, "t");  // quoted: text
  expect_recipe_error("max_pixels zero", kMinimal + "max_pixels: 0\n", {"dir/recipe.yaml:9:", "max_pixels", "1..4294967296"});
  EXPECT_EQ(parse_recipe(kMinimal + "max_pixels: 1000\n", "r.yaml").limits.max_pixels, 1000u);
  EXPECT_EQ(parse_recipe(kMinimal, "r.yaml").limits.max_pixels, kDefaultMaxPixels);
  expect_recipe_error("negative seed", replace(kMinimal, "seed: 1", "seed: -1"),
                      {"dir/recipe.yaml:2:", "seed '-1' is invalid; valid: an integer in 0..18446744073709551615"});
  expect_recipe_error("sampling a text parameter",
                      replace(replace(kMinimal, "l0_smooth", "dehaze_nonlocal"), "lambda: 0.02", "airlight: {choice: [auto]}"),
                      {"dir/recipe.yaml:8:", "free text"});
}

// A spec of each type for the sampling tests.
const ParamSpec kReal = real_param("x", 1, Interval::closed(0.001, 1000), SamplingScale::log, "");
const ParamSpec kInt = integer_param("n", 1, IntegerRange(0, 100), "");

std::vector<double> draws(const Distribution& d, const ParamSpec& spec, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i) out.push_back(std::get<double>(draw(d, spec, CounterRng(1000 + i, 5), i)));
  return out;
}

TEST(Sampling, LogUniformIsUniformInLog) {
  const Distribution d{.kind = Distribution::Kind::log_uniform, .lo = 0.002, .hi = 0.2};
  const auto v = draws(d, kReal, 20000);
  int below_geometric_mean = 0, lowest_decade = 0;
  for (double x : v) {
    ASSERT_GE(x, 0.002);
    ASSERT_LE(x, 0.2);
    below_geometric_mean += x < 0.02;
    lowest_decade += x < 0.002 * std::pow(10, 0.5);  // the first quarter of the log range
  }
  // Binomial(20000, p): 5 sigma is 354 for p = 1/2, 306 for p = 1/4.
  EXPECT_NEAR(below_geometric_mean, 10000, 354);
  EXPECT_NEAR(lowest_decade, 5000, 306);
}

TEST(Sampling, UniformAndRoundedIntegersFollowFansRule) {
  const auto v = draws({.kind = Distribution::Kind::uniform, .lo = 1, .hi = 10}, kReal, 20000);
  double mean = 0;
  for (double x : v) mean += x / 20000;
  EXPECT_NEAR(mean, 5.5, 5 * 2.598 / std::sqrt(20000.0));
  // Integer parameter, uniform [1, 10] rounded: P(1) = P(10) = 1/18, P(2..9) = 1/9.
  std::map<int, int> counts;
  for (double x : draws({.kind = Distribution::Kind::uniform, .lo = 1, .hi = 10}, kInt, 36000)) {
    ASSERT_EQ(x, std::round(x));
    ++counts[static_cast<int>(x)];
  }
  EXPECT_EQ(counts.size(), 10u);
  EXPECT_NEAR(counts[1], 2000, 5 * 43.7);
  EXPECT_NEAR(counts[10], 2000, 5 * 43.7);
  EXPECT_NEAR(counts[5], 4000, 5 * 59.6);
}

TEST(Sampling, IntUniformChoiceAndSweep) {
  std::map<int, int> counts;
  for (double x : draws({.kind = Distribution::Kind::int_uniform, .lo = 10, .hi = 20}, kInt, 22000)) ++counts[static_cast<int>(x)];
  ASSERT_EQ(counts.size(), 11u);
  for (const auto& [value, n] : counts) EXPECT_NEAR(n, 2000, 5 * 42.6) << value;

  const ParamSpec mode = choice_param("mode", "a", {"a", "b", "c"}, "");
  const Distribution weighted{.kind = Distribution::Kind::choice, .values = {"a", "b", "c"}, .weights = {1, 3, 0}};
  std::map<std::string, int> picks;
  for (int i = 0; i < 8000; ++i) ++picks[std::get<std::string>(draw(weighted, mode, CounterRng(i, 9), i))];
  EXPECT_EQ(picks["c"], 0);
  EXPECT_NEAR(picks["b"], 6000, 5 * 38.7);

  const Distribution sweep{.kind = Distribution::Kind::sweep, .values = {2.0, 3.0, 4.0}};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(std::get<double>(draw(sweep, kInt, CounterRng(i), i)), 2 + i % 3);
}

TEST(Plan, KeysSeedsAndOperatorMixture) {
  EXPECT_EQ(pair_key(12, 100, 3, 7), "000012_03");
  EXPECT_EQ(pair_key(12, 12345678, 3, 150), "00000012_003");
  const auto dir = test::scratch_dir("datagen-plan");
  test::write_sources(dir, 3);
  test::write_text_file(dir / "recipe.yaml", test::mixture_recipe(400));
  const Recipe recipe = load_recipe(dir / "recipe.yaml");
  const auto sources = list_sources(recipe.sources, recipe.base_dir);
  ASSERT_EQ(sources.size(), 3u);
  EXPECT_EQ(sources[0].name, "sources/img0.png");
  std::map<std::string, int> ops;
  std::set<std::uint64_t> seeds;
  for (int p = 0; p < 400; ++p) {
    const PairPlan plan = plan_pair(recipe, sources[1], 1, sources.size(), p);
    ++ops[plan.op->entry->name];
    seeds.insert(plan.seed);
    EXPECT_LT(plan.seed, std::uint64_t{1} << 53);
    // Planning is a pure function: the same pair plans the same way again.
    const PairPlan again = plan_pair(recipe, sources[1], 1, sources.size(), p);
    EXPECT_EQ(again.seed, plan.seed);
    EXPECT_EQ(format_value(again.values.all().begin()->second), format_value(plan.values.all().begin()->second));
  }
  EXPECT_EQ(seeds.size(), 400u);
  // Weights 2:1:1:1:1 → l0_smooth 1/3 of 400 (5 sigma ≈ 47), the others 1/6.
  EXPECT_NEAR(ops["l0_smooth"], 133, 47);
  EXPECT_NEAR(ops["jpeg"], 67, 37);
}

TEST(Sources, DirectoryGlobListAndErrors) {
  const auto dir = test::scratch_dir("datagen-sources");
  test::write_sources(dir, 3);
  fs::create_directories(dir / "sources" / "nested");
  fs::copy_file(dir / "sources" / "img0.png", dir / "sources" / "nested" / "deep.png");
  test::write_text_file(dir / "sources" / "notes.txt", "not an image");
  test::write_text_file(dir / "list.txt", "# comment\nsources/img2.png\n\nsources/img0.png   \n");
  const auto names = [](const std::vector<SourceImage>& s) {
    std::vector<std::string> out;
    for (const auto& x : s) out.push_back(x.name);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(list_sources({{.kind = SourceSpec::Kind::directory, .path = "sources"}}, dir)),
            (V{"sources/img0.png", "sources/img1.png", "sources/img2.png"}));
  EXPECT_EQ(names(list_sources({{.kind = SourceSpec::Kind::directory, .path = "sources", .recursive = true}}, dir)),
            (V{"sources/img0.png", "sources/img1.png", "sources/img2.png", "sources/nested/deep.png"}));
  EXPECT_EQ(names(list_sources({{.kind = SourceSpec::Kind::glob, .path = "sources/img[12].png"}}, dir)),
            (V{"sources/img1.png", "sources/img2.png"}));
  EXPECT_EQ(names(list_sources({{.kind = SourceSpec::Kind::list, .path = "list.txt"}}, dir)),
            (V{"sources/img2.png", "sources/img0.png"}));
  // The same image twice is one source (its pairs would otherwise repeat).
  EXPECT_EQ(list_sources({{.kind = SourceSpec::Kind::list, .path = "list.txt"},
                          {.kind = SourceSpec::Kind::glob, .path = "sources/img0.png"}},
                         dir)
                .size(),
            2u);
  EXPECT_THROW(list_sources({{.kind = SourceSpec::Kind::directory, .path = "missing"}}, dir), Error);
  EXPECT_THROW(list_sources({{.kind = SourceSpec::Kind::glob, .path = "sources/*.tif"}}, dir), Error);
  EXPECT_THROW(list_sources({{.kind = SourceSpec::Kind::list, .path = "nope.txt"}}, dir), Error);
}

}  // namespace
}  // namespace opforge::datagen
