// Dataset generation: contents and provenance, and byte-identical datasets
// whatever the thread count, shard split or resume point.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <limits>
#include <set>
#include <sstream>

#include "datagen_fixtures.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/sha256.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/preview.hpp"

namespace opforge::datagen {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct Fixture {
  fs::path dir;
  Recipe recipe;
};

Fixture make_fixture(const std::string& name, int sources = 4, int pairs = 4, const std::string& format = "png8") {
  Fixture f{test::scratch_dir(name), {}};
  test::write_sources(f.dir, sources);
  test::write_text_file(f.dir / "recipe.yaml", test::mixture_recipe(pairs, format));
  f.recipe = load_recipe(f.dir / "recipe.yaml");
  return f;
}

RunSummary run(const Fixture& f, const std::string& out, int threads, ShardSpec shard = {}, bool resume = false) {
  return generate(f.recipe, {.out_dir = f.dir / out, .shard = shard, .resume = resume, .threads = threads});
}

std::vector<json> rows_of(const fs::path& metadata) {
  std::vector<json> rows;
  std::istringstream in(std::string(test::dataset_tree(metadata.parent_path())[metadata.filename().string()]));
  for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
  return rows;
}

TEST(Generate, RowsCarryFullProvenanceAndMatchTheirFiles) {
  const Fixture f = make_fixture("datagen-rows");
  const RunSummary s = run(f, "out", 2);
  EXPECT_EQ(s.written, 16u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_TRUE(s.finalized);
  const fs::path out = f.dir / "out";
  const auto rows = rows_of(out / "metadata.jsonl");
  ASSERT_EQ(rows.size(), 16u);
  std::string previous_key;
  for (const json& row : rows) {
    SCOPED_TRACE(row.dump());
    for (const char* field : {"key", "input_file_name", "output_file_name", "operator", "operator_version", "params",
                              "seed", "source", "source_sha256", "input_sha256", "output_sha256", "opforge_version",
                              "crop", "kind", "recipe"}) {
      EXPECT_TRUE(row.contains(field)) << field;
    }
    EXPECT_GT(row["key"].get<std::string>(), previous_key);  // sorted
    previous_key = row["key"];
    EXPECT_EQ(row["key"].get<std::string>().find('.'), std::string::npos);
    EXPECT_EQ(sha256_file_hex(out / row["input_file_name"].get<std::string>()), row["input_sha256"]);
    EXPECT_EQ(sha256_file_hex(out / row["output_file_name"].get<std::string>()), row["output_sha256"]);
    EXPECT_EQ(sha256_file_hex(f.dir / row["source"].get<std::string>()), row["source_sha256"]);
    const OperatorEntry& op = find_operator(row["operator"]);
    EXPECT_EQ(row["operator_version"], op.version);
    // Every parameter of the operator is recorded, sampled ones within the recipe's range.
    EXPECT_EQ(row["params"].size(), op.params.size());
    if (op.name == "l0_smooth") {
      EXPECT_GE(row["params"]["lambda"].get<double>(), 0.002);
      EXPECT_LE(row["params"]["lambda"].get<double>(), 0.2);
    }
    // The pair recomputes from its record: same crop of the source, same operator, same seed.
    const Image source = read_image(f.dir / row["source"].get<std::string>());
    const auto crop = row["crop"];
    const Image window = source(cv::Rect(crop[0], crop[1], crop[2], crop[3])).clone();
    std::map<std::string, std::string> text;
    for (const auto& [name, value] : row["params"].items()) {
      text[name] = value.is_string() ? value.get<std::string>() : value.dump();
    }
    const ParamValues values = op.resolve(text);
    const Image expected = op.kind == OperatorKind::filter ? op.apply(window, values, {.seed = row["seed"]})
                                                           : op.target(window, values);
    const Image stored = read_image(out / row["output_file_name"].get<std::string>());
    EXPECT_EQ(encode_png(stored, 8), encode_png(expected, 8));
  }
  // One dataset-level summary, failures.jsonl present and empty.
  const json summary = json::parse(test::dataset_tree(out)["dataset.json"]);
  EXPECT_EQ(summary["pairs"], 16);
  EXPECT_EQ(summary["webdataset"]["pattern"], "webdataset/mix-{000000..000003}.tar");
  EXPECT_EQ(test::dataset_tree(out)["failures.jsonl"], "");
}

// Parses a ustar archive: member names and contents; checks each header checksum.
std::vector<std::pair<std::string, std::string>> untar(const std::string& tar) {
  std::vector<std::pair<std::string, std::string>> members;
  std::size_t at = 0;
  while (at + 512 <= tar.size()) {
    const std::string header = tar.substr(at, 512);
    if (header == std::string(512, '\0')) break;
    unsigned sum = 0;
    for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header[i]);
    EXPECT_EQ(sum, std::stoul(header.substr(148, 7), nullptr, 8));
    EXPECT_EQ(header.substr(257, 5), "ustar");
    const std::size_t size = std::stoul(header.substr(124, 11), nullptr, 8);
    members.emplace_back(header.substr(0, header.find('\0')), tar.substr(at + 512, size));
    at += 512 + (size + 511) / 512 * 512;
  }
  return members;
}

TEST(Generate, WebDatasetShardsHoldEveryPairInKeyOrder) {
  const Fixture f = make_fixture("datagen-wds");
  run(f, "out", 2);
  auto tree = test::dataset_tree(f.dir / "out");
  const auto rows = rows_of(f.dir / "out" / "metadata.jsonl");
  std::size_t next = 0;
  for (int shard = 0; shard < 4; ++shard) {
    const auto members = untar(tree["webdataset/mix-00000" + std::to_string(shard) + ".tar"]);
    ASSERT_EQ(members.size(), shard < 3 ? 15u : 3u);  // 5 pairs per shard, 16 pairs
    for (std::size_t m = 0; m < members.size(); m += 3, ++next) {
      const json& row = rows[next];
      const std::string key = row["key"];
      EXPECT_EQ(members[m].first, key + ".input.png");
      EXPECT_EQ(members[m].second, tree[row["input_file_name"].get<std::string>()]);
      EXPECT_EQ(members[m + 1].first, key + ".output.png");
      EXPECT_EQ(members[m + 1].second, tree[row["output_file_name"].get<std::string>()]);
      EXPECT_EQ(members[m + 2].first, key + ".json");
      EXPECT_EQ(json::parse(members[m + 2].second), row);
    }
  }
  EXPECT_EQ(next, rows.size());
}

TEST(Generate, ByteIdenticalOnOneAndTwoThreads) {
  const Fixture f = make_fixture("datagen-threads");
  run(f, "one", 1);
  run(f, "two", 2);
  const auto one = test::dataset_tree(f.dir / "one"), two = test::dataset_tree(f.dir / "two");
  EXPECT_GT(one.size(), 30u);
  EXPECT_EQ(test::tree_difference(one, two), "");
}

TEST(Generate, ShardsMergedEqualOneRun) {
  const Fixture f = make_fixture("datagen-shards", 5);
  run(f, "whole", 2);
  for (int i : {2, 0}) run(f, "split", 1, {i, 3});
  // Merging before every shard has committed names the missing one.
  try {
    merge(f.dir / "split");
    ADD_FAILURE() << "merge with shard 1 missing succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard(s) 1 of 3"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(f.dir / "split" / "metadata.jsonl"));
  run(f, "split", 2, {1, 3});
  const RunSummary merged = merge(f.dir / "split");
  EXPECT_EQ(merged.reused, 20u);
  EXPECT_EQ(test::tree_difference(test::dataset_tree(f.dir / "whole"), test::dataset_tree(f.dir / "split")), "");
  // A shard count other than the directory's is refused.
  EXPECT_THROW(run(f, "split", 1, {0, 2}, true), Error);
}

TEST(Generate, ResumeRedoesExactlyTheIncompletePairs) {
  const Fixture f = make_fixture("datagen-resume");
  run(f, "reference", 2);
  run(f, "out", 2);
  const fs::path out = f.dir / "out";
  const auto rows = rows_of(out / "metadata.jsonl");
  // Damage the dataset as a crash or a careless user would: a deleted output,
  // a truncated input, a torn journal line, a stray temporary file.
  fs::remove(out / rows[3]["output_file_name"].get<std::string>());
  fs::resize_file(out / rows[7]["input_file_name"].get<std::string>(), 100);
  {
    std::ofstream journal(out / ".opforge" / "shard-0-of-1.rows.jsonl", std::ios::app);
    journal << "{\"key\":\"000003_0";
  }
  test::write_text_file(out / "input" / "000" / ".000001_01.png.tmp-999-0", "partial");
  EXPECT_THROW(run(f, "out", 2), Error);  // without --resume the directory is refused
  const RunSummary s = run(f, "out", 2, {}, true);
  EXPECT_EQ(s.written, 2u);
  EXPECT_EQ(s.reused, 14u);
  EXPECT_EQ(test::tree_difference(test::dataset_tree(f.dir / "reference"), test::dataset_tree(out)), "");
  // Resuming a complete dataset changes nothing.
  EXPECT_EQ(run(f, "out", 1, {}, true).written, 0u);
  EXPECT_EQ(test::tree_difference(test::dataset_tree(f.dir / "reference"), test::dataset_tree(out)), "");
}

TEST(Generate, FailedSourcesAndPairsAreRecordedAndTheRunGoesOn) {
  Fixture f = make_fixture("datagen-failures", 3);
  // A corrupt PNG, and an image smaller than the 48x48 crop.
  test::write_text_file(f.dir / "sources" / "broken.png", "\x89PNG\r\n\x1a\n garbage");
  write_image(f.dir / "sources" / "tiny.png", test::synthetic_image(20, 30, 3));
  const RunSummary s = run(f, "out", 2);
  EXPECT_EQ(s.written, 12u);
  EXPECT_EQ(s.failed, 8u);
  std::istringstream failures(test::dataset_tree(f.dir / "out")["failures.jsonl"]);
  int broken = 0, tiny = 0;
  for (std::string line; std::getline(failures, line);) {
    const json row = json::parse(line);
    const std::string error = row["error"];
    if (row["source"] == "sources/broken.png") {
      ++broken;
      EXPECT_EQ(row["stage"], "source");
    }
    if (row["source"] == "sources/tiny.png") {
      ++tiny;
      EXPECT_NE(error.find("smaller than the crop 48x48"), std::string::npos) << error;
    }
  }
  EXPECT_EQ(broken, 4);
  EXPECT_EQ(tiny, 4);
  EXPECT_EQ(rows_of(f.dir / "out" / "metadata.jsonl").size(), 12u);
}

// The issue-11 inputs that once killed a run: a float32 .npy holding -inf
// (weighted_median died by SIGSEGV on it) and a source above the recipe's
// pixel limit. Each is one recorded failure; the run, --resume and preview
// carry on.
TEST(Generate, HostileSourcesAreRecordedFailuresForTheRunResumeAndPreview) {
  const fs::path dir = test::scratch_dir("datagen-hostile");
  test::write_sources(dir, 2, 40);
  Image inf_image = test::synthetic_image(40, 40, 3);
  inf_image.at<cv::Vec3f>(3, 4)[0] = -std::numeric_limits<float>::infinity();
  write_file_atomic(dir / "sources" / "inf.npy", encode_npy(inf_image));
  write_image(dir / "sources" / "large.png", test::synthetic_image(120, 120, 3));
  test::write_text_file(dir / "recipe.yaml", "name: hostile\nseed: 2\nsources: sources\nmax_pixels: 10000\n"
                                             "pairs_per_source: 2\noperators:\n  - name: weighted_median\n"
                                             "    params:\n      radius: {uniform: [1, 4]}\n");
  const Recipe recipe = load_recipe(dir / "recipe.yaml");
  const RunSummary s = generate(recipe, {.out_dir = dir / "out", .threads = 2});
  EXPECT_EQ(s.written, 4u);
  EXPECT_EQ(s.failed, 4u);
  const std::string failures = test::dataset_tree(dir / "out")["failures.jsonl"];
  EXPECT_NE(failures.find("inf.npy': value -inf at row 3, column 4, channel 0 is not finite"), std::string::npos) << failures;
  EXPECT_NE(failures.find("large.png': its header says 120x120 (0.0 MP), above the pixel limit of 10000"),
            std::string::npos) << failures;
  const RunSummary again = generate(recipe, {.out_dir = dir / "out", .resume = true, .threads = 1});
  EXPECT_EQ(again.reused, 4u);
  EXPECT_EQ(again.failed, 4u);
  const Image sheet = contact_sheet(recipe, {.pairs = 8});
  EXPECT_GT(sheet.rows, 8 * 100);
}

TEST(Generate, ResumeRedoesThePairsOfASourceWhoseContentChanged) {
  Fixture f = make_fixture("datagen-changed-source", 3, 2);
  run(f, "out", 2);
  // Same path, new content: a resume must not keep pairs made from the old bytes.
  write_image(f.dir / "sources" / "img1.png", test::synthetic_image(90, 70, 3));
  const auto rows_before = rows_of(f.dir / "out" / "metadata.jsonl");
  fs::remove(f.dir / "out" / rows_before[0]["output_file_name"].get<std::string>());
  const RunSummary s = run(f, "out", 2, {}, true);
  EXPECT_EQ(s.changed_sources, std::vector<std::string>{"sources/img1.png"});
  EXPECT_EQ(s.written, 3u);  // the two pairs of img1 and the deleted one
  std::map<std::string, std::set<std::string>> shas;
  for (const json& row : rows_of(f.dir / "out" / "metadata.jsonl")) {
    shas[row["source"].get<std::string>()].insert(row["source_sha256"].get<std::string>());
  }
  for (const auto& [source, values] : shas) EXPECT_EQ(values.size(), 1u) << source;
  EXPECT_EQ(*shas["sources/img1.png"].begin(), sha256_file_hex(f.dir / "sources" / "img1.png"));
  // The same dataset as a fresh run on today's sources.
  run(f, "fresh", 1);
  EXPECT_EQ(test::tree_difference(test::dataset_tree(f.dir / "fresh"), test::dataset_tree(f.dir / "out")), "");
}

TEST(Generate, ResumeTrustsNoJournalRowThatPointsOutsideTheDataset) {
  const Fixture f = make_fixture("datagen-journal-escape", 2, 1);
  run(f, "reference", 1);
  run(f, "out", 1);
  // A hand-edited row naming a file outside input/ (with that file's true hash).
  const fs::path journal = f.dir / "out" / ".opforge" / "shard-0-of-1.rows.jsonl";
  std::istringstream lines(test::dataset_tree(f.dir / "out" / ".opforge")["shard-0-of-1.rows.jsonl"]);
  std::string edited;
  for (std::string line; std::getline(lines, line);) {
    json row = json::parse(line);
    if (row["key"] == "000000_00") {
      test::write_text_file(f.dir / "outside.png", "not part of the dataset");
      row["input_file_name"] = "../outside.png";
      row["input_sha256"] = sha256_file_hex(f.dir / "outside.png");
    }
    edited += row.dump() + "\n";
  }
  test::write_text_file(journal, edited);
  const RunSummary s = run(f, "out", 1, {}, true);
  EXPECT_EQ(s.written, 1u);  // the edited pair is redone, not trusted
  EXPECT_EQ(test::tree_difference(test::dataset_tree(f.dir / "reference"), test::dataset_tree(f.dir / "out")), "");
}

TEST(Generate, ResumeRemovesTemporariesOfAKilledStart) {
  const Fixture f = make_fixture("datagen-stale-tmp", 2, 1);
  run(f, "out", 1);
  const fs::path stale = f.dir / "out" / ".opforge" / ".shard-0-of-1.rows.jsonl.tmp-999999-0";
  test::write_text_file(stale, "{\"key\":");
  run(f, "out", 1, {}, true);
  EXPECT_FALSE(fs::exists(stale));
}

TEST(Generate, RefusesForeignDirectoriesAndChangedRecipes) {
  Fixture f = make_fixture("datagen-refuse");
  fs::create_directories(f.dir / "busy");
  test::write_text_file(f.dir / "busy" / "mine.txt", "user data");
  EXPECT_THROW(run(f, "busy", 1), Error);
  EXPECT_THROW(run(f, "busy", 1, {}, true), Error);  // --resume does not adopt foreign directories either
  EXPECT_TRUE(fs::exists(f.dir / "busy" / "mine.txt"));
  run(f, "out", 2);
  test::write_text_file(f.dir / "recipe.yaml", test::mixture_recipe(5));
  f.recipe = load_recipe(f.dir / "recipe.yaml");
  try {
    run(f, "out", 1, {}, true);
    ADD_FAILURE() << "a changed recipe resumed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different recipe"), std::string::npos) << e.what();
  }
}

TEST(Generate, NpyAndPng16Formats) {
  for (const std::string format : {"npy", "png16"}) {
    const Fixture f = make_fixture("datagen-" + format, 2, 2, format);
    run(f, "out", 2);
    const auto rows = rows_of(f.dir / "out" / "metadata.jsonl");
    ASSERT_EQ(rows.size(), 4u);
    for (const auto& row : rows) {
      const std::string name = row["output_file_name"];
      EXPECT_EQ(fs::path(name).extension(), format == "npy" ? ".npy" : ".png");
      EXPECT_FALSE(read_image(f.dir / "out" / name).empty());
    }
  }
}

TEST(Preview, ContactSheetShowsTheFirstPairs) {
  const Fixture f = make_fixture("datagen-preview");
  const Image sheet = contact_sheet(f.recipe, {.pairs = 5, .thumbnail_height = 64});
  EXPECT_EQ(sheet.channels(), 3);
  EXPECT_GE(sheet.rows, 5 * 64);
  EXPECT_THROW(contact_sheet(f.recipe, {.pairs = 0}), Error);
}

}  // namespace
}  // namespace opforge::datagen
