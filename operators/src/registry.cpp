#include "opforge/operators/registry.hpp"

#include <tbb/global_control.h>
#include <tbb/info.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "opforge/core/error.hpp"
#include "opforge/core/memory.hpp"

namespace opforge {

std::string_view to_string(OperatorKind kind) {
  return kind == OperatorKind::filter ? "filter" : "degradation";
}

// Every `OperatorEntry NAME_entry()` of operators/src, in the generated
// registered_operators.cpp.
std::vector<OperatorEntry> registered_operators();

const std::vector<OperatorEntry>& all_operators() {
  static const std::vector<OperatorEntry> entries = [] {
    std::vector<OperatorEntry> all = registered_operators();
    std::sort(all.begin(), all.end(), [](const OperatorEntry& a, const OperatorEntry& b) {
      return std::pair(a.kind, a.name) < std::pair(b.kind, b.name);
    });
    return all;
  }();
  return entries;
}

const OperatorEntry& find_operator(const std::string& name) {
  for (const auto& e : all_operators()) {
    if (e.name == name) return e;
  }
  std::string valid;
  for (const auto& e : all_operators()) valid += (valid.empty() ? "" : ", ") + e.name;
  throw Error("unknown operator '" + name + "'; valid: " + valid);
}

ParamValues OperatorEntry::resolve(const std::map<std::string, std::string>& text) const {
  return checked(resolve_params(name, params, text));
}

ParamValues OperatorEntry::validate(const ParamValues& values) const {
  if (values.checked_by() == name) return values;
  return checked(validate_params(name, params, values));
}

ParamValues OperatorEntry::checked(ParamValues valid) const {
  if (check) check(valid);
  valid.mark_checked_by(name);
  return valid;
}

Image OperatorEntry::apply(const Image& input, const ParamValues& values, const RunContext& context) const {
  // The values before the estimate: some estimates read them (the bilateral
  // grid's depth follows the value range).
  require_image(input, name);
  return run_valid(input, nullptr, validate(values), context);
}

Image OperatorEntry::run_valid(const Image& input, const Image* prepared, const ParamValues& valid,
                               const RunContext& context) const {
  require_memory(name,
                 "a " + std::to_string(input.cols) + "x" + std::to_string(input.rows) + "x" +
                     std::to_string(input.channels()) + " image",
                 peak_bytes(input, valid));
  Image result = run(prepared ? *prepared : prepare ? prepare(input, valid) : input, valid, context);
  // Valid input never gives a non-finite result; should an operator's
  // mathematics break down anyway, say so here rather than hand it on.
  if (const auto bad = first_bad_value(result, std::numeric_limits<double>::infinity())) {
    double lo = 0, hi = 0;
    cv::minMaxLoc(input.reshape(1), &lo, &hi);
    throw Error(name + ": the result has a non-finite value at row " + std::to_string(bad->row) + ", column " +
                std::to_string(bad->column) + " for an input whose values span [" + format_value(lo) + ", " +
                format_value(hi) + "]; valid input is nominally in [0, 1]");
  }
  return result;
}

int operator_threads() {
  return static_cast<int>(std::min<std::size_t>(
      tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism),
      static_cast<std::size_t>(tbb::info::default_concurrency())));
}

Image OperatorEntry::target(const Image& source, const ParamValues& values) const {
  require_image(source, name);
  return prepare ? prepare(source, validate(values)) : source;
}

OperatorEntry::Pair OperatorEntry::pair(const Image& source, const ParamValues& values, const RunContext& context) const {
  require_image(source, name);
  const ParamValues valid = validate(values);
  if (kind == OperatorKind::filter) return {.input = source, .output = run_valid(source, &source, valid, context)};
  Image reference = target(source, valid);
  Image input = run_valid(source, &reference, valid, context);
  return {.input = std::move(input), .output = std::move(reference)};
}

namespace {

nlohmann::json spec_json(const ParamSpec& s) {
  nlohmann::json j = {{"name", s.name},
                      {"type", to_string(s.type)},
                      {"scale", to_string(s.scale)},
                      {"range", s.range_text()},
                      {"doc", s.doc}};
  if (s.type == ParamType::choice) {
    j["default"] = s.default_choice;
    j["choices"] = s.choices;
  } else if (s.type == ParamType::text) {
    j["default"] = s.default_choice;
    j["format"] = s.text_format;
    j["required"] = s.required;
  } else if (s.type == ParamType::boolean) {
    j["default"] = s.default_number != 0;
  } else {
    j["default"] = s.default_number;
    j["min"] = s.min;
    j["max"] = s.max;
    j["min_inclusive"] = !s.min_open;
    j["max_inclusive"] = !s.max_open;
    if (s.odd) j["odd"] = true;
    if (s.also_valid) j["also_valid"] = *s.also_valid;
  }
  return j;
}

// Markdown table cells must not contain a bare '|'.
std::string cell(std::string s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

}  // namespace

std::string registry_json() {
  nlohmann::json ops = nlohmann::json::array();
  for (const auto& e : all_operators()) {
    nlohmann::json params = nlohmann::json::array();
    for (const auto& s : e.params) params.push_back(spec_json(s));
    ops.push_back({{"name", e.name},
                   {"summary", e.summary},
                   {"citation", e.citation},
                   {"kind", to_string(e.kind)},
                   {"version", e.version},
                   {"params", params}});
  }
  return nlohmann::json({{"operators", ops}}).dump(2);
}

std::string registry_markdown() {
  std::ostringstream md;
  md << "# Operators\n\n"
     << "<!-- Generated from the operator registry by `make docs` (opforge list --markdown).\n"
     << "     Do not edit by hand: a test fails when this file is out of date. -->\n\n"
     << "| operator | kind | version | summary |\n|---|---|---|---|\n";
  for (const auto& e : all_operators()) {
    md << "| [`" << e.name << "`](#" << e.name << ") | " << to_string(e.kind) << " | " << e.version << " | "
       << cell(e.summary) << " |\n";
  }
  for (const auto& e : all_operators()) {
    md << "\n## " << e.name << "\n\n"
       << e.summary << ".\n\n"
       << "- kind: " << to_string(e.kind) << "\n"
       << "- version: " << e.version << "\n"
       << "- citation: " << e.citation << "\n"
       << (e.prepare ? "- the pair's target is the prepared source (see the parameters), not the source itself\n" : "")
       << "\n"
       << "| parameter | type | default | valid | sampling | meaning |\n|---|---|---|---|---|---|\n";
    for (const auto& s : e.params) {
      md << "| `" << s.name << "` | " << to_string(s.type) << " | " << (s.required ? "(required)" : cell(s.default_text())) << " | "
         << cell(s.range_text()) << " | " << to_string(s.scale) << " | " << cell(s.doc) << " |\n";
    }
    md << "\nExample: `opforge apply " << e.name << " in.png out.png";
    for (const auto& s : e.params) md << " --param " << s.name << "=" << (s.required ? "FILE" : s.default_text());
    md << "`\n";
  }
  return md.str();
}

}  // namespace opforge
