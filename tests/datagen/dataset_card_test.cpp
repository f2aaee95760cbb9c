// The dataset card (README.md): its YAML header declares every column of
// metadata.jsonl with its type, and params as a struct of every parameter
// any of the recipe's operators has.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "datagen_fixtures.hpp"
#include "opforge/datagen/generate.hpp"

namespace opforge::datagen {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

TEST(DatasetCard, DeclaresEveryColumnAndEveryParameterTyped) {
  const fs::path dir = test::scratch_dir("datagen-card");
  test::write_sources(dir, 4);
  test::write_text_file(dir / "recipe.yaml", test::mixture_recipe(4));
  const Recipe recipe = load_recipe(dir / "recipe.yaml");
  generate(recipe, {.out_dir = dir / "out", .threads = 2});
  auto tree = test::dataset_tree(dir / "out");
  ASSERT_TRUE(tree.count("README.md"));
  const std::string card = tree["README.md"];
  ASSERT_EQ(card.rfind("---\n", 0), 0u);
  const auto end = card.find("\n---\n", 4);
  ASSERT_NE(end, std::string::npos);
  const YAML::Node header = YAML::Load(card.substr(4, end - 4));
  EXPECT_EQ(header["license"].as<std::string>(), "unknown");  // left for the user

  std::map<std::string, YAML::Node> features;
  for (const YAML::Node& f : header["dataset_info"]["features"]) features.emplace(f["name"].as<std::string>(), f);
  std::map<std::string, std::string> params;
  for (const auto& p : features.at("params")["struct"]) params[p["name"].as<std::string>()] = p["dtype"].as<std::string>();
  // Every parameter of every operator the recipe names, whether or not a row drew it.
  for (const auto& choice : recipe.operators) {
    for (const auto& spec : choice.entry->params) EXPECT_TRUE(params.count(spec.name)) << spec.name;
  }
  EXPECT_EQ(params.at("clip"), "bool");
  EXPECT_EQ(params.at("quality"), "int64");
  EXPECT_EQ(params.at("lambda"), "float64");
  EXPECT_EQ(params.at("mode"), "string");

  // Every column of every row is declared, with a type its values fit.
  std::istringstream rows(tree["metadata.jsonl"]);
  int count = 0;
  for (std::string line; std::getline(rows, line); ++count) {
    const json row = json::parse(line);
    for (const auto& [column, value] : row.items()) {
      std::string name = column;
      if (name.size() > 10 && name.substr(name.size() - 10) == "_file_name") name.resize(name.size() - 10);
      ASSERT_TRUE(features.count(name)) << column;
      if (name == "params") {
        for (const auto& [param, v] : value.items()) {
          const std::string& dtype = params.at(param);
          if (v.is_boolean()) {
            EXPECT_EQ(dtype, "bool") << param;
          } else if (v.is_number_integer()) {
            EXPECT_TRUE(dtype == "int64" || dtype == "float64") << param;
          } else if (v.is_number()) {
            EXPECT_EQ(dtype, "float64") << param;
          } else {
            EXPECT_EQ(dtype, "string") << param;
          }
        }
      }
    }
  }
  EXPECT_EQ(count, 16);
  EXPECT_EQ(header["dataset_info"]["splits"][0]["num_examples"].as<int>(), count);
  // The recipe and each operator's citation are in the body.
  EXPECT_NE(card.find(recipe.text), std::string::npos);
  for (const auto& choice : recipe.operators) EXPECT_NE(card.find(choice.entry->citation), std::string::npos);
}

}  // namespace
}  // namespace opforge::datagen
