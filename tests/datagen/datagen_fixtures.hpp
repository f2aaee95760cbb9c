#pragma once
// Small datasets for the datagen tests: synthetic source images and recipes
// written into a scratch directory, and whole-tree snapshots to compare runs.

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "opforge/core/io.hpp"
#include "test_support.hpp"

namespace opforge::test {

/// Writes `count` synthetic PNG sources of varied sizes into dir/sources.
inline void write_sources(const std::filesystem::path& dir, int count, int base_size = 72) {
  std::filesystem::create_directories(dir / "sources");
  for (int i = 0; i < count; ++i) {
    const Image img = synthetic_image(base_size + 7 * i, base_size + 11 * i, 3);
    write_image(dir / "sources" / ("img" + std::to_string(i) + ".png"), img);
  }
}

inline void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// A mixture recipe over dir/sources: filters and degradations, crops, WebDataset shards.
inline std::string mixture_recipe(int pairs_per_source = 4, const std::string& format = "png8", int crop = 48) {
  return "name: mix\n"
         "seed: 7\n"
         "sources:\n"
         "  directory: sources\n"
         "preprocess:\n"
         "  crop: " + std::to_string(crop) + "\n"
         "pairs_per_source: " + std::to_string(pairs_per_source) + "\n"
         "operators:\n"
         "  - name: l0_smooth\n"
         "    weight: 2\n"
         "    params:\n"
         "      lambda: {log_uniform: [0.002, 0.2]}\n"
         "  - name: rolling_guidance\n"
         "    params:\n"
         "      sigma_s: {uniform: [1, 4]}\n"
         "  - name: gaussian_noise\n"
         "    params:\n"
         "      sigma: {uniform: [10, 70]}\n"
         "      mode: {choice: [rgb, gray]}\n"
         "  - name: jpeg\n"
         "    params:\n"
         "      quality: {int_uniform: [10, 20]}\n"
         "  - name: sr_bicubic\n"
         "    params:\n"
         "      scale: {sweep: [2, 3, 4]}\n"
         "output:\n"
         "  format: " + format + "\n"
         "  webdataset:\n"
         "    shard_pairs: 5\n";
}

/// Every file under `dir` except the run state in .opforge/, by relative path.
inline std::map<std::string, std::string> dataset_tree(const std::filesystem::path& dir) {
  std::map<std::string, std::string> tree;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string rel = e.path().lexically_relative(dir).generic_string();
    if (rel.rfind(".opforge", 0) == 0 || !e.is_regular_file()) continue;
    const auto bytes = read_file(e.path(), true);
    tree[rel] = std::string(bytes.begin(), bytes.end());
  }
  return tree;
}

/// Names the first difference between two trees (empty when equal).
inline std::string tree_difference(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  for (const auto& [name, bytes] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return name + " is missing from the second tree";
    if (it->second != bytes) return name + " differs";
  }
  for (const auto& [name, bytes] : b) {
    if (!a.count(name)) return name + " is only in the second tree";
  }
  return "";
}

}  // namespace opforge::test
