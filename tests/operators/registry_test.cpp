#include "opforge/operators/registry.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "opforge/core/error.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

TEST(Registry, DocsOperatorsMdIsUpToDate) {
  const std::filesystem::path doc = std::filesystem::path(OPFORGE_SOURCE_DIR) / "docs" / "operators.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in) << doc << " is missing; run `make docs`";
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), registry_markdown()) << "docs/operators.md is out of date: run `make docs`";
}

TEST(Registry, EveryEntryIsCompleteAndItsDefaultsAreValid) {
  ASSERT_FALSE(all_operators().empty());
  for (const auto& e : all_operators()) {
    EXPECT_FALSE(e.summary.empty()) << e.name;
    EXPECT_FALSE(e.citation.empty()) << e.name;
    EXPECT_FALSE(e.version.empty()) << e.name;
    EXPECT_TRUE(e.run) << e.name;
    for (const auto& s : e.params) {
      EXPECT_FALSE(s.doc.empty()) << e.name << "." << s.name;
      if (s.type == ParamType::real || s.type == ParamType::integer) {
        EXPECT_TRUE(s.in_range(s.default_number)) << e.name << "." << s.name;
      }
    }
    // All defaults pass validation; required parameters need a value.
    std::map<std::string, std::string> required;
    for (const auto& s : e.params) {
      if (s.required) required[s.name] = test::data_path("conformance/inputs/canyon256.png").string();
    }
    EXPECT_NO_THROW(e.resolve(required)) << e.name;
    if (!required.empty()) EXPECT_THROW(e.resolve({}), Error) << e.name;
  }
}

TEST(Registry, UnknownOperatorListsTheValidNames) {
  try {
    find_operator("l0_smoth");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown operator 'l0_smoth'; valid: l0_smooth"), std::string::npos);
  }
}

TEST(Registry, JsonListsEveryParamSpec) {
  const auto j = nlohmann::json::parse(registry_json());
  const auto& ops = j.at("operators");
  ASSERT_EQ(ops.size(), all_operators().size());
  const auto& l0 = ops.at(0);
  EXPECT_EQ(l0.at("name"), "l0_smooth");
  EXPECT_EQ(l0.at("kind"), "filter");
  EXPECT_NE(l0.at("citation").get<std::string>().find("Xu"), std::string::npos);
  const auto& lambda = l0.at("params").at(0);
  EXPECT_EQ(lambda.at("name"), "lambda");
  EXPECT_EQ(lambda.at("default"), 0.02);
  EXPECT_EQ(lambda.at("min"), 0.0);
  EXPECT_EQ(lambda.at("min_inclusive"), false);
  EXPECT_EQ(lambda.at("scale"), "log");
}

TEST(Registry, ApplyValidatesImagesAndValues) {
  const auto& op = find_operator("l0_smooth");
  ParamValues bad;
  bad.set("lambda", -1.0);
  EXPECT_THROW(op.apply(test::synthetic_image(8, 8, 3), bad), Error);
  EXPECT_THROW(op.apply(cv::Mat(8, 8, CV_32FC4, cv::Scalar::all(0)), {}), Error);
  EXPECT_THROW(op.apply(cv::Mat(8, 8, CV_8UC3, cv::Scalar::all(0)), {}), Error);
}

}  // namespace
}  // namespace opforge
