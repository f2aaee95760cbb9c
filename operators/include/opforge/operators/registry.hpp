#pragma once
// The operator registry: one self-description per operator (name, summary,
// citation, kind, version, parameters) plus a type-erased entry point.
//
// `opforge list`, `opforge apply`, datagen recipe validation and
// docs/operators.md all read this one table. Adding an operator means its
// header, its source file and its tests: the source file defines a function
// `OperatorEntry NAME_entry()` at the start of a line, and the build lists
// every such function of operators/src (cmake/list_operators.cmake), so no
// list is kept by hand. Parameter validation happens here, once: an
// operator's `run` only ever sees values that passed its ParamSpecs and the
// rule across them. The typed parameter structs in the operator headers carry
// their defaults; their valid ranges are declared once, in each operator's
// ParamTable, and listed in docs/operators.md (`opforge list`).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "opforge/core/image.hpp"
#include "opforge/core/param_table.hpp"
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
  /// Optional: the rule across parameters, for values that passed their
  /// specs (throws Error "name: problem").
  std::function<void(const ParamValues&)> check = nullptr;
  /// Set when the operator keeps a constant image constant at its value (with
  /// the defaults): the largest deviation it promises. Unset for operators
  /// that change a flat image (noise, dehazing, style transfer).
  std::optional<double> keeps_constant = std::nullopt;
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
  /// Typed values → validated values with defaults filled in, marked as
  /// checked by this operator (apply and pair do not check them again).
  ParamValues validate(const ParamValues& values) const;
  /// Validates the image (require_image: finite values within ±1e6) and the
  /// values (unless this operator checked them already), checks the memory
  /// estimate, then runs the operator (on the prepared source, for entries
  /// that prepare one).
  Image apply(const Image& input, const ParamValues& values, const RunContext& context = {}) const;
  /// The pair's reference image for `source`: prepare(source), or source.
  Image target(const Image& source, const ParamValues& values) const;

  /// A dataset pair made from `source`, preparing it once.
  struct Pair {
    Image input, output;
  };
  /// filter: (source, op(source)); degradation: (op(target), target) with
  /// target = prepare(source) or the source.
  Pair pair(const Image& source, const ParamValues& values, const RunContext& context = {}) const;

 private:
  // Values that passed their specs, after the rule across them, marked as
  // checked by this operator.
  ParamValues checked(ParamValues valid) const;
  // apply's work once the image and values are valid: the memory estimate for
  // `input`, then run on `prepared` (or on prepare(input)), then the result's check.
  Image run_valid(const Image& input, const Image* prepared, const ParamValues& valid, const RunContext& context) const;
};

/// What an operator file gives to make its entry from its ParamTable: `run`,
/// `prepare` and `peak_bytes` receive the typed parameters, made from
/// validated values, and the entry's name is the table's.
template <typename P>
struct TypedOperator {
  std::string summary;
  std::string citation;
  OperatorKind kind = OperatorKind::filter;
  std::string version;
  const ParamTable<P>* params = nullptr;
  std::optional<double> keeps_constant = std::nullopt;
  std::function<double(const Image& input, const P& params)> peak_bytes;
  std::function<Image(const Image& input, const P& params, const RunContext& context)> run;
  std::function<Image(const Image& source, const P& params)> prepare = nullptr;
};

template <typename P>
OperatorEntry make_entry(TypedOperator<P> op) {
  const ParamTable<P>* table = op.params;
  OperatorEntry e{
      .name = table->op(),
      .summary = std::move(op.summary),
      .citation = std::move(op.citation),
      .kind = op.kind,
      .version = std::move(op.version),
      .params = table->specs(),
      .check = [table](const ParamValues& v) { table->check(table->from_values(v)); },
      .keeps_constant = op.keeps_constant,
      .peak_bytes = [table, peak = std::move(op.peak_bytes)](const Image& img, const ParamValues& v) {
        return peak(img, table->from_values(v));
      },
      .run = [table, run = std::move(op.run)](const Image& img, const ParamValues& v, const RunContext& ctx) {
        return run(img, table->from_values(v), ctx);
      },
  };
  if (op.prepare) {
    e.prepare = [table, prepare = std::move(op.prepare)](const Image& img, const ParamValues& v) {
      return prepare(img, table->from_values(v));
    };
  }
  return e;
}

/// rows × cols, as a double (for memory estimates).
inline double pixel_count(const Image& img) { return static_cast<double>(img.rows) * img.cols; }

/// Worker threads operators may run on now (TBB's limit), for estimates of
/// per-thread buffers.
int operator_threads();

/// Every registered operator: the filters, then the degradations, each by name.
const std::vector<OperatorEntry>& all_operators();
/// The entry called `name`; throws Error listing the valid names otherwise.
const OperatorEntry& find_operator(const std::string& name);

/// `opforge list --json`: every entry with its ParamSpecs.
std::string registry_json();
/// docs/operators.md, generated from the registry.
std::string registry_markdown();

}  // namespace opforge
