#include "dataset_card.hpp"

#include <algorithm>
#include <map>
#include <vector>
#include <sstream>

#include "opforge/core/version.hpp"

namespace opforge::datagen {
namespace {

// Hugging Face's dtype of a parameter type. A name that is an integer in one
// operator and real in another is float64 (integers convert exactly).
std::string dtype_of(ParamType type) {
  switch (type) {
    case ParamType::real: return "float64";
    case ParamType::integer: return "int64";
    case ParamType::boolean: return "bool";
    case ParamType::choice:
    case ParamType::text: return "string";
  }
  return "string";
}

std::string merged(const std::string& a, const std::string& b) {
  if (a == b) return a;
  if ((a == "float64" || a == "int64") && (b == "float64" || b == "int64")) return "float64";
  return "string";
}

// A YAML double-quoted scalar.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

}  // namespace

std::string dataset_card(const Recipe& recipe, const CardCounts& counts) {
  std::map<std::string, std::string> params;  // name → dtype, over every operator of the recipe
  std::vector<const OperatorEntry*> entries;  // in recipe order, once each
  for (const auto& choice : recipe.operators) {
    if (std::find(entries.begin(), entries.end(), choice.entry) == entries.end()) entries.push_back(choice.entry);
    for (const auto& spec : choice.entry->params) {
      const std::string t = dtype_of(spec.type);
      const auto [it, fresh] = params.emplace(spec.name, t);
      if (!fresh) it->second = merged(it->second, t);
    }
  }
  // Columns of metadata.jsonl in its order (docs/datagen.md); the two
  // *_file_name columns load as the images `input` and `output`.
  const std::vector<std::pair<std::string, std::string>> columns = {
      {"key", "string"},           {"input", "image"},          {"output", "image"},
      {"operator", "string"},      {"operator_version", "string"}, {"kind", "string"},
      {"seed", "int64"},           {"source", "string"},        {"source_sha256", "string"},
      {"source_index", "int64"},   {"pair_index", "int64"},     {"input_sha256", "string"},
      {"output_sha256", "string"}, {"format", "string"},        {"recipe", "string"},
      {"opforge_version", "string"}};

  std::ostringstream md;
  md << "---\n"
     << "# The licence of this dataset follows from its source images: set it.\n"
     << "license: unknown\n"
     << "pretty_name: " << quoted(recipe.name) << "\n"
     << "task_categories:\n- image-to-image\n"
     << "tags:\n- opforge\n";
  for (const OperatorEntry* e : entries) md << "- " << e->name << "\n";
  md << "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n"
     << "    - metadata.jsonl\n    - input/**\n    - output/**\n"
     << "dataset_info:\n  features:\n";
  for (const auto& [name, dtype] : columns) md << "  - name: " << name << "\n    dtype: " << dtype << "\n";
  md << "  - name: params\n    struct:\n";
  for (const auto& [name, dtype] : params) md << "    - name: " << name << "\n      dtype: " << dtype << "\n";
  md << "  - name: crop\n    sequence: int64\n"
     << "  splits:\n  - name: train\n    num_examples: " << counts.pairs << "\n"
     << "---\n\n"
     << "# " << recipe.name << "\n\n"
     << counts.pairs << " (input, output) pairs made by opforge " << opforge_version() << " from " << counts.sources
     << " source images, " << recipe.pairs_per_source << " per source (" << counts.failed
     << " failed: failures.jsonl), stored as " << to_string(recipe.format)
     << ". Regenerating from the recipe below gives the same bytes.\n\n"
     << "## Operators\n\n";
  for (const OperatorEntry* e : entries) {
    md << "- `" << e->name << "` (" << to_string(e->kind) << ", version " << e->version << "): " << e->citation << "\n";
  }
  md << "\n## Columns\n\n"
     << "One row of `metadata.jsonl` per pair: `input_file_name` and `output_file_name` (the images `input` and "
     << "`output`), the operator and its version, `params` (every parameter of the operator, sampled or default; "
     << "parameters of the recipe's other operators are null), the pair's `seed`, the `source` image with its "
     << "sha256, the `crop` [x, y, width, height] or null, and each file's sha256.\n\n"
     << "## Recipe\n\n````yaml\n"
     << recipe.text << (recipe.text.empty() || recipe.text.back() == '\n' ? "" : "\n") << "````\n";
  return md.str();
}

}  // namespace opforge::datagen
