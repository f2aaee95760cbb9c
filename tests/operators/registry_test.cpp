#include "opforge/operators/registry.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "opforge/core/error.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

// Every parameter at its default, required ones given a valid file.
ParamValues defaults_of(const OperatorEntry& e) {
  ParamValues v;
  for (const auto& s : e.params) {
    if (s.required) v.set(s.name, test::data_path("conformance/inputs/canyon256.png").string());
  }
  return v;
}

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
    if (!required.empty()) {
      EXPECT_THROW(e.resolve({}), Error) << e.name;
    }
  }
}

// Values every operator must refuse (exit-2 behaviour, never a signal or a
// hang): NaN, ±inf, and a finite value beyond the ±1e6 rule.
TEST(Registry, EveryOperatorRefusesNonFiniteAndHugeInputWithinSeconds) {
  for (const auto& e : all_operators()) {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 1e30f}) {
      Image img = test::synthetic_image(20, 23, 3);
      img.at<cv::Vec3f>(4, 6)[1] = bad;
      const auto start = std::chrono::steady_clock::now();
      try {
        e.apply(img, defaults_of(e));
        ADD_FAILURE() << e.name << " accepted " << bad;
      } catch (const Error& error) {
        const std::string msg = error.what();
        EXPECT_EQ(msg.rfind(e.name + ": value ", 0), 0u) << msg;
        EXPECT_NE(msg.find("at row 4, column 6, channel 1"), std::string::npos) << msg;
      }
      EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0) << e.name;
    }
  }
}

// Valid but unkind input: the bounds of the value rule, negative values,
// constant and black images, tiny and odd sizes. Each operator returns a
// finite image of its promised size or refuses with an Error, in seconds.
TEST(Registry, EveryOperatorCopesWithExtremeValidInput) {
  std::vector<std::pair<std::string, Image>> images;
  {
    Image extreme = test::synthetic_image(20, 23, 3);
    for (int y = 0; y < extreme.rows; y += 3) extreme.at<cv::Vec3f>(y, (y * 7) % extreme.cols) = {1e6f, -1e6f, 1e6f};
    images.emplace_back("±1e6", extreme);
    images.emplace_back("negative", test::synthetic_image(20, 23, 3) - cv::Scalar::all(1.0));
    images.emplace_back("constant", Image(20, 23, CV_32FC3, cv::Scalar::all(0.3)));
    images.emplace_back("black", Image(20, 23, CV_32FC3, cv::Scalar::all(0.0)));
    images.emplace_back("1x1", test::synthetic_image(1, 1, 3));
    images.emplace_back("2x3 grey", test::synthetic_image(2, 3, 1));
    images.emplace_back("3x517", test::synthetic_image(3, 517, 3));
  }
  for (const auto& e : all_operators()) {
    for (const auto& [label, img] : images) {
      const auto start = std::chrono::steady_clock::now();
      try {
        const Image out = e.apply(img, defaults_of(e));
        EXPECT_FALSE(first_bad_value(out, std::numeric_limits<double>::infinity())) << e.name << " on " << label;
        if (e.kind == OperatorKind::filter) {
          EXPECT_EQ(out.size(), img.size()) << e.name << " on " << label;
        }
      } catch (const Error& error) {
        EXPECT_EQ(std::string(error.what()).rfind(e.name, 0), 0u) << label << ": " << error.what();
      }
      EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0)
          << e.name << " on " << label;
    }
  }
}

TEST(Registry, EveryOperatorEstimatesItsPeakMemory) {
  for (const auto& e : all_operators()) {
    ASSERT_TRUE(e.peak_bytes) << e.name;
    const ParamValues values = e.validate(defaults_of(e));
    const double small = e.peak_bytes(Image(100, 100, CV_32FC3, cv::Scalar::all(0.5)), values);
    const double large = e.peak_bytes(Image(400, 400, CV_32FC3, cv::Scalar::all(0.5)), values);
    // At least the input's own float32 values, growing with the image.
    EXPECT_GE(small, 100.0 * 100 * 3 * 4) << e.name;
    EXPECT_GT(large, 10 * small) << e.name;
  }
  // Refused up front with one line naming the estimate, not a bad_alloc.
  try {
    find_operator("resize_bicubic").apply(Image(2000, 2000, CV_32FC3, cv::Scalar::all(0.5)),
                                          find_operator("resize_bicubic").resolve({{"scale", "16"}}));
    ADD_FAILURE() << "a 32000x32000 resize was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("needs an estimated"), std::string::npos) << error.what();
  }
}

TEST(Registry, UnknownOperatorListsTheValidNames) {
  try {
    find_operator("l0_smoth");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("unknown operator 'l0_smoth'; valid: ", 0), 0u) << msg;
    for (const auto& op : all_operators()) EXPECT_NE(msg.find(op.name), std::string::npos) << op.name;
  }
}

TEST(Registry, ListsFiltersThenDegradationsEachByName) {
  const auto& ops = all_operators();
  for (std::size_t i = 1; i < ops.size(); ++i) {
    EXPECT_LT(std::pair(ops[i - 1].kind, ops[i - 1].name), std::pair(ops[i].kind, ops[i].name)) << ops[i].name;
  }
}

TEST(Registry, JsonListsEveryParamSpec) {
  const auto j = nlohmann::json::parse(registry_json());
  const auto& ops = j.at("operators");
  ASSERT_EQ(ops.size(), all_operators().size());
  const auto l0_at = std::find_if(ops.begin(), ops.end(), [](const auto& op) { return op.at("name") == "l0_smooth"; });
  ASSERT_NE(l0_at, ops.end());
  const auto& l0 = *l0_at;
  EXPECT_EQ(l0.at("kind"), "filter");
  EXPECT_NE(l0.at("citation").get<std::string>().find("Xu"), std::string::npos);
  const auto& lambda = l0.at("params").at(0);
  EXPECT_EQ(lambda.at("name"), "lambda");
  EXPECT_EQ(lambda.at("default"), 0.02);
  EXPECT_EQ(lambda.at("min"), 0.0);
  EXPECT_EQ(lambda.at("min_inclusive"), false);
  EXPECT_EQ(lambda.at("scale"), "log");
}

// The defaults `opforge list --json` publishes, given back as NAME=VALUE
// text, resolve to exactly the defaults the operator runs with.
TEST(Registry, DefaultsRoundTripThroughTheJsonList) {
  const auto ops = nlohmann::json::parse(registry_json()).at("operators");
  for (const auto& op : ops) {
    const OperatorEntry& e = find_operator(op.at("name").get<std::string>());
    std::map<std::string, std::string> text;
    for (const auto& p : op.at("params")) {
      const auto& d = p.at("default");
      const std::string name = p.at("name").get<std::string>();
      if (p.at("type") == "text" && p.at("required").get<bool>()) {
        text[name] = test::data_path("conformance/inputs/canyon256.png").string();
      } else if (d.is_string()) {
        text[name] = d.get<std::string>();
      } else if (d.is_boolean()) {
        text[name] = d.get<bool>() ? "true" : "false";
      } else {
        text[name] = format_value(d.get<double>());
      }
    }
    const ParamValues from_json = e.resolve(text);
    const ParamValues defaults = e.validate(defaults_of(e));
    EXPECT_EQ(from_json.all(), defaults.all()) << e.name;
  }
}

// 37x45 RGB: odd sizes, several FFT and row blocks.
Image property_image() { return test::synthetic_image(37, 45, 3); }

TEST(RegistryProperties, EveryOperatorGivesTheSameBitsOnOneAndTwoThreads) {
  const Image img = property_image();
  for (const auto& e : all_operators()) {
    SCOPED_TRACE(e.name);
    test::expect_bit_identical_on_1_and_2_threads([&] { return e.apply(img, defaults_of(e), {.seed = 7}); });
  }
}

// Operators that promise it keep a constant image constant, at its value.
TEST(RegistryProperties, ConstantImagesStayConstantWhereTheOperatorPromisesIt) {
  int promised = 0;
  for (const auto& e : all_operators()) {
    if (!e.keeps_constant) continue;
    ++promised;
    for (const int channels : {1, 3}) {
      const float value = 0.4f;
      const Image flat(31, 40, CV_32FC(channels), cv::Scalar::all(value));
      const Image out = e.apply(flat, defaults_of(e));
      double lo = 0, hi = 0;
      cv::minMaxLoc(out.reshape(1), &lo, &hi);
      EXPECT_LE(std::max(std::abs(lo - value), std::abs(hi - value)), *e.keeps_constant)
          << e.name << " with " << channels << " channel(s): [" << lo << ", " << hi << "]";
    }
  }
  EXPECT_GE(promised, 8);  // the smoothing filters and the resizes
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
