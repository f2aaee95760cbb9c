// The dataset reader: the generator's rows read back field for field and
// written back byte for byte, malformed lines skipped and counted, and the
// validation split by source image.

#include "opforge/datagen/dataset.hpp"

#include <gtest/gtest.h>

#include <set>

#include "datagen_fixtures.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/recipe.hpp"

namespace opforge::datagen {
namespace {

namespace fs = std::filesystem;

fs::path generated(const std::string& name, int sources) {
  const fs::path dir = test::scratch_dir(name);
  test::write_sources(dir, sources);
  test::write_text_file(dir / "recipe.yaml", test::mixture_recipe(3));
  generate(load_recipe(dir / "recipe.yaml"), {.out_dir = dir / "out", .threads = 2});
  return dir / "out";
}

TEST(Dataset, ReadsTheGeneratorsRowsAndWritesThemBackIdentically) {
  const fs::path out = generated("dataset-rows", 3);
  const Dataset d = Dataset::open(out);
  ASSERT_EQ(d.rows().size(), 9u);
  EXPECT_EQ(d.skipped_lines(), 0u);
  std::ifstream in(out / "metadata.jsonl");
  std::size_t i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    const DatasetRow& row = d.rows()[i];
    EXPECT_EQ(row.to_json().dump(), nlohmann::json::parse(line).dump());  // every field, losslessly
    EXPECT_TRUE(fs::is_regular_file(out / row.input_file));
    EXPECT_TRUE(fs::is_regular_file(out / row.output_file));
    EXPECT_EQ(row.pair_index, static_cast<int>(i % 3));
    EXPECT_EQ(row.source_index, i / 3);
    ASSERT_TRUE(row.crop.has_value());
    EXPECT_EQ((*row.crop)[2], 48);
    if (row.op == "l0_smooth") {
      EXPECT_GT(row.number("lambda"), 0.0);
    }
  }
  EXPECT_THROW(d.rows()[0].number("no_such_parameter"), Error);
}

TEST(Dataset, SkipsAndCountsMalformedLinesAndExplainsWhatIsNotADataset) {
  const fs::path out = generated("dataset-malformed", 2);
  {
    std::ofstream append(out / "metadata.jsonl", std::ios::app);
    append << "{not json\n" << R"({"key": "000000_00"})" << "\n";
  }
  const Dataset d = Dataset::open(out);
  EXPECT_EQ(d.rows().size(), 6u);
  EXPECT_EQ(d.skipped_lines(), 2u);
  const fs::path empty = test::scratch_dir("dataset-none");
  EXPECT_NE(test::error_of([&] { Dataset::open(empty); }).find("is not an opforge dataset: it has no metadata.jsonl"),
            std::string::npos);
  fs::create_directories(empty / ".opforge");
  EXPECT_NE(test::error_of([&] { Dataset::open(empty); }).find("run `opforge datagen merge"), std::string::npos);
  EXPECT_NE(test::error_of([] { DatasetRow::from_json(nlohmann::json{{"key", 3}}); }).find("'key' has the wrong type"),
            std::string::npos);
}

TEST(Dataset, SplitsBySourceNeverByPair) {
  const fs::path out = generated("dataset-split", 5);
  const Dataset d = Dataset::open(out);
  const Split split = split_by_source(d.rows(), 2, 1234);
  EXPECT_EQ(split.train.size() + split.validation.size(), d.rows().size());
  std::set<std::string> train_sources, validation_sources;
  for (auto i : split.train) train_sources.insert(d.rows()[i].source_sha256);
  for (auto i : split.validation) validation_sources.insert(d.rows()[i].source_sha256);
  EXPECT_EQ(validation_sources.size(), 2u);
  EXPECT_EQ(train_sources.size(), 3u);
  for (const auto& s : validation_sources) EXPECT_EQ(train_sources.count(s), 0u) << "a source on both sides";
  // The same sources whatever the row order; another seed may choose others.
  auto reversed = d.rows();
  std::reverse(reversed.begin(), reversed.end());
  const Split again = split_by_source(reversed, 2, 1234);
  std::set<std::string> again_validation;
  for (auto i : again.validation) again_validation.insert(reversed[i].source_sha256);
  EXPECT_EQ(again_validation, validation_sources);
  bool another_choice = false;
  for (std::uint64_t seed = 1; seed < 20 && !another_choice; ++seed) {
    std::set<std::string> v;
    for (auto i : split_by_source(d.rows(), 2, seed).validation) v.insert(d.rows()[i].source_sha256);
    another_choice = v != validation_sources;
  }
  EXPECT_TRUE(another_choice);
  EXPECT_NE(test::error_of([&] { split_by_source(d.rows(), 5, 1); }).find("leaves none to train on"), std::string::npos);
}

}  // namespace
}  // namespace opforge::datagen
