#pragma once
// The operator registry: one self-description per operator (name, summary,
// citation, kind, version, parameters) plus a type-erased entry point.
//
// `opforge list`, `opforge apply`, datagen recipe validation and
// docs/operators.md all read this one table, so adding an operator means one
// source file, one line in registry.cpp and its tests — nothing in cli/ or
// datagen/ changes. Parameter validation happens here, once: an operator's
// `run` only ever sees values that passed its ParamSpecs.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "opforge/core/image.hpp"
#include "opforge/core/params.hpp"

namespace opforge {

enum class OperatorKind {
  filter,       ///< target = op(source)
  degradation,  ///< input = op(source), target = source
};
std::string_view to_string(OperatorKind kind);

/// What an operator may need beyond its parameters.
struct RunContext {
  std::uint64_t seed = 0;  ///< for operators that draw random numbers
};

struct OperatorEntry {
  std::string name;      ///< registry name, e.g. "l0_smooth"
  std::string summary;   ///< one line
  std::string citation;  ///< the paper(s) and the reference code matched
  OperatorKind kind = OperatorKind::filter;
  std::string version;   ///< bumped whenever outputs change
  std::vector<ParamSpec> params;
  /// The estimated peak bytes one run allocates for `input` with (validated)
  /// `values`: each operator's own buffers, calibrated against measured peak
  /// RSS with a margin. apply() refuses with one line when it exceeds what
  /// this process may allocate (core memory_budget), instead of dying of
  /// bad_alloc or the OOM killer half-way.
  std::function<double(const Image& input, const ParamValues& values)> peak_bytes;
  std::function<Image(const Image&, const ParamValues&, const RunContext&)> run;
  /// Optional: how a source becomes the pair's reference before `run` sees it
  /// (e.g. sr_bicubic crops to a multiple of the scale and may keep only Y).
  /// Then target = prepare(source) and input = run(prepare(source)).
  std::function<Image(const Image&, const ParamValues&)> prepare = nullptr;

  /// NAME=VALUE strings → validated values with defaults filled in.
  ParamValues resolve(const std::map<std::string, std::string>& text) const;
  /// Typed values → validated values with defaults filled in.
  ParamValues validate(const ParamValues& values) const;
  /// Validates the image (require_image: finite values within ±1e6) and the
  /// values, checks the memory estimate, then runs the operator (on the
  /// prepared source, for entries that prepare one).
  Image apply(const Image& input, const ParamValues& values, const RunContext& context = {}) const;
  /// The pair's reference image for `source`: prepare(source), or source.
  Image target(const Image& source, const ParamValues& values) const;
};

/// rows × cols, as a double (for memory estimates).
inline double pixel_count(const Image& img) { return static_cast<double>(img.rows) * img.cols; }

/// Worker threads operators may run on now (TBB's limit), for estimates of
/// per-thread buffers.
int operator_threads();

/// Every registered operator, in registry order.
const std::vector<OperatorEntry>& all_operators();
/// The entry called `name`; throws Error listing the valid names otherwise.
const OperatorEntry& find_operator(const std::string& name);

/// `opforge list --json`: every entry with its ParamSpecs.
std::string registry_json();
/// docs/operators.md, generated from the registry.
std::string registry_markdown();

}  // namespace opforge
