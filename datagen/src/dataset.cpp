#include "opforge/datagen/dataset.hpp"

#include <algorithm>
#include <fstream>
#include <map>

#include "opforge/core/error.hpp"
#include "opforge/core/rng.hpp"

namespace opforge::datagen {

using json = nlohmann::json;

json DatasetRow::to_json() const {
  return {{"key", key},
          {"input_file_name", input_file},
          {"output_file_name", output_file},
          {"operator", op},
          {"operator_version", op_version},
          {"kind", kind},
          {"params", params},
          {"seed", seed},
          {"source", source},
          {"source_sha256", source_sha256},
          {"source_index", source_index},
          {"pair_index", pair_index},
          {"crop", crop ? json::array({(*crop)[0], (*crop)[1], (*crop)[2], (*crop)[3]}) : json(nullptr)},
          {"input_sha256", input_sha256},
          {"output_sha256", output_sha256},
          {"format", format},
          {"recipe", recipe},
          {"opforge_version", opforge_version}};
}

namespace {

template <typename T>
T field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) throw Error(std::string("row has no '") + name + "'");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(std::string("row field '") + name + "' has the wrong type");
  }
}

}  // namespace

DatasetRow DatasetRow::from_json(const json& j) {
  if (!j.is_object()) throw Error("row is not a JSON object");
  DatasetRow r;
  r.key = field<std::string>(j, "key");
  r.input_file = field<std::string>(j, "input_file_name");
  r.output_file = field<std::string>(j, "output_file_name");
  r.op = field<std::string>(j, "operator");
  r.op_version = field<std::string>(j, "operator_version");
  r.kind = field<std::string>(j, "kind");
  r.params = field<json>(j, "params");
  if (!r.params.is_object()) throw Error("row field 'params' is not an object");
  r.seed = field<std::uint64_t>(j, "seed");
  r.source = field<std::string>(j, "source");
  r.source_sha256 = field<std::string>(j, "source_sha256");
  r.source_index = field<std::size_t>(j, "source_index");
  r.pair_index = field<int>(j, "pair_index");
  const json crop = field<json>(j, "crop");
  if (!crop.is_null()) {
    if (!crop.is_array() || crop.size() != 4) throw Error("row field 'crop' is not [x, y, width, height]");
    r.crop = std::array<int, 4>{};
    for (int i = 0; i < 4; ++i) (*r.crop)[i] = field<int>(json{{"v", crop[i]}}, "v");
  }
  r.input_sha256 = field<std::string>(j, "input_sha256");
  r.output_sha256 = field<std::string>(j, "output_sha256");
  r.format = field<std::string>(j, "format");
  r.recipe = field<std::string>(j, "recipe");
  r.opforge_version = field<std::string>(j, "opforge_version");
  return r;
}

double DatasetRow::number(const std::string& name) const {
  const auto it = params.find(name);
  if (it == params.end() || !it->is_number()) {
    throw Error("pair " + key + " (" + op + ") has no numeric parameter '" + name + "'");
  }
  return it->get<double>();
}

std::map<std::string, double> DatasetRow::numbers() const {
  std::map<std::string, double> out;
  for (const auto& [name, value] : params.items()) {
    if (value.is_number()) out[name] = value.get<double>();
  }
  return out;
}

Dataset Dataset::open(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  Dataset d;
  d.dir_ = dir;
  const fs::path metadata = dir / "metadata.jsonl";
  std::error_code ec;
  if (!fs::is_regular_file(metadata, ec)) {
    if (fs::is_directory(dir / ".opforge", ec)) {
      throw Error("dataset '" + dir.string() + "' is not finished: run `opforge datagen merge " + dir.string() +
                  "` once every shard is done");
    }
    throw Error("'" + dir.string() + "' is not an opforge dataset: it has no metadata.jsonl");
  }
  std::ifstream in(metadata, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      d.rows_.push_back(DatasetRow::from_json(json::parse(line)));
    } catch (const json::exception&) {
      ++d.skipped_;
    } catch (const Error&) {
      ++d.skipped_;
    }
  }
  if (in.bad()) throw Error("cannot read '" + metadata.string() + "'");
  return d;
}

Split split_by_source(const std::vector<DatasetRow>& rows, std::size_t validation_sources, std::uint64_t seed) {
  // Each distinct source (by content), ranked by a keyed hash of its sha256.
  std::map<std::string, std::uint64_t> rank;
  for (const auto& r : rows) {
    if (rank.count(r.source_sha256)) continue;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a of the digest text, then keyed by the seed
    for (const unsigned char c : r.source_sha256) h = (h ^ c) * 1099511628211ull;
    rank[r.source_sha256] = CounterRng(seed, 0x5eed).bits(h);
  }
  if (validation_sources >= rank.size()) {
    throw Error("the dataset has " + std::to_string(rank.size()) + " source image(s): holding out " +
                std::to_string(validation_sources) + " leaves none to train on");
  }
  std::vector<std::pair<std::uint64_t, std::string>> order;
  for (const auto& [sha, h] : rank) order.emplace_back(h, sha);
  std::sort(order.begin(), order.end());
  std::map<std::string, bool> held_out;
  for (std::size_t i = 0; i < order.size(); ++i) held_out[order[i].second] = i < validation_sources;
  Split split;
  for (std::size_t i = 0; i < rows.size(); ++i) (held_out[rows[i].source_sha256] ? split.validation : split.train).push_back(i);
  return split;
}

}  // namespace opforge::datagen
