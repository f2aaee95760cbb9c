#pragma once
// Parameter specifications and validated parameter values.
//
// Every operator parameter is described once by a ParamSpec: name, type,
// default, valid range, natural sampling scale and a one-line doc. The
// operator registry validates user input against these specs in one place
// (`resolve_params` / `validate_params`); operators receive only values that
// passed. The CLI, datagen recipes and docs/operators.md all read the same specs.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace opforge {

enum class ParamType { real, integer, boolean, choice, text };
/// How a parameter is naturally sampled (datagen's default for a range).
enum class SamplingScale { log, linear, integer, choice, fixed };

std::string_view to_string(ParamType t);
std::string_view to_string(SamplingScale s);

/// The valid values of a real parameter: an interval whose ends are each
/// open or closed. `Interval::open_closed(0, 1)` is (0, 1].
struct Interval {
  double min = 0, max = 0;
  bool min_open = false, max_open = false;

  static constexpr Interval closed(double lo, double hi) { return {lo, hi, false, false}; }
  static constexpr Interval open_closed(double lo, double hi) { return {lo, hi, true, false}; }
  static constexpr Interval closed_open(double lo, double hi) { return {lo, hi, false, true}; }
  static constexpr Interval open(double lo, double hi) { return {lo, hi, true, true}; }
};

/// The valid values of an integer parameter: min..max, optionally only the
/// odd ones, optionally with one more value outside (0 = "automatic").
/// `IntegerRange(2, 256).or_also(0)` is "0 or 2..256".
struct IntegerRange {
  std::int64_t min = 0, max = 0;
  bool odd = false;
  std::optional<std::int64_t> also;

  constexpr IntegerRange(std::int64_t lo, std::int64_t hi) : min(lo), max(hi) {}
  constexpr IntegerRange odd_only() const {
    IntegerRange r = *this;
    r.odd = true;
    return r;
  }
  constexpr IntegerRange or_also(std::int64_t value) const {
    IntegerRange r = *this;
    r.also = value;
    return r;
  }
};

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::real;
  SamplingScale scale = SamplingScale::linear;
  double default_number = 0;            ///< real/integer default; boolean: 1 or 0
  std::string default_choice;           ///< choice/text default
  double min = 0, max = 0;              ///< real/integer bounds
  bool min_open = false, max_open = false;
  bool odd = false;                     ///< integer: only odd values of min..max
  std::optional<double> also_valid;     ///< integer: one more valid value outside min..max
  std::vector<std::string> choices;     ///< valid values of a choice parameter
  std::string text_format;              ///< what a text parameter accepts
  /// Text parameters: what is wrong with a value ("" when nothing is), checked
  /// wherever values are validated, so a recipe with a malformed value is
  /// refused before any work. Checks the form (and that a named file is a
  /// regular file), not a file's contents.
  std::function<std::string(const std::string&)> text_problem = nullptr;
  bool required = false;                ///< text: no usable default, a value must be given
  std::string doc;

  /// "(0, 1]", "1..10", "odd 3..61", "0 or 2..256", "true | false" or "pcg | direct".
  std::string range_text() const;
  std::string default_text() const;
  /// True when `v` is a valid value of a real or integer parameter (range,
  /// oddness, the extra value; not that an integer is whole).
  bool in_range(double v) const;
  /// True when every value of [lo, hi] that the type allows is valid: what a
  /// sampled range of this parameter needs.
  bool covers(double lo, double hi) const;
};

ParamSpec real_param(std::string name, double default_value, Interval valid, SamplingScale scale, std::string doc);
ParamSpec integer_param(std::string name, std::int64_t default_value, IntegerRange valid, std::string doc);
ParamSpec boolean_param(std::string name, bool default_value, std::string doc);
/// One of a fixed list of strings.
ParamSpec choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                       std::string doc);

/// Free-form text (a file name, "r,g,b"); `format` describes the valid values
/// in messages and docs, `problem` checks a value (see ParamSpec::text_problem).
/// Never sampled.
ParamSpec text_param(std::string name, std::string default_value, std::string format, std::string doc,
                     std::function<std::string(const std::string&)> problem = nullptr);

/// A text_problem for parameters naming a file: "" when `path` is a regular
/// file, otherwise what it is instead ("no such file", "a directory", …).
std::string file_problem(const std::string& path);

/// A parameter value: a number (integers are whole doubles), a choice or
/// text string, or a boolean.
using ParamValue = std::variant<double, std::string, bool>;

/// Values for the parameters of one operator, by name. Values that passed an
/// operator's validation (defaults filled in) remember which operator
/// checked them, so the operator does not check them again; any set() forgets.
class ParamValues {
 public:
  void set(const std::string& name, ParamValue value) {
    values_[name] = std::move(value);
    checked_by_.clear();
  }
  bool contains(const std::string& name) const { return values_.count(name) != 0; }
  double number(const std::string& name) const;
  std::int64_t integer(const std::string& name) const;
  bool flag(const std::string& name) const;
  const std::string& choice(const std::string& name) const;
  const std::map<std::string, ParamValue>& all() const { return values_; }

  /// The operator whose validation produced these values ("" when none did).
  const std::string& checked_by() const { return checked_by_; }
  void mark_checked_by(std::string op) { checked_by_ = std::move(op); }

 private:
  std::map<std::string, ParamValue> values_;
  std::string checked_by_;
};

/// Formats a value for messages, metadata and file names (shortest round-trip
/// decimal for numbers, "true"/"false" for booleans).
std::string format_value(const ParamValue& v);

/// Parses NAME=VALUE strings from the CLI or a recipe against `specs` and fills
/// defaults. Throws opforge::Error naming `op`, the parameter and the valid
/// range for unknown names, unparsable or non-finite numbers, non-integers for
/// integer parameters, out-of-range values and unknown choices.
ParamValues resolve_params(std::string_view op, std::span<const ParamSpec> specs,
                           const std::map<std::string, std::string>& text);

/// Checks already-typed values (e.g. sampled by datagen) and fills defaults;
/// same errors as resolve_params, and a missing required parameter.
ParamValues validate_params(std::string_view op, std::span<const ParamSpec> specs, const ParamValues& values);

/// Parses a finite decimal number, the whole string; false on failure.
bool parse_number(std::string_view text, double& out);

/// Parses a plain unsigned decimal integer (digits only: no sign, no
/// exponent), the whole string, that fits 64 bits; false otherwise.
bool parse_unsigned(std::string_view text, std::uint64_t& out);

/// The one rule for seeds (`apply --seed`, a recipe's seed): an integer in
/// 0..18446744073709551615, written in plain digits. Throws Error naming `what`
/// and the valid range otherwise (so -1 is refused, not wrapped to 2^64-1).
std::uint64_t parse_seed(std::string_view text, std::string_view what = "--seed");

}  // namespace opforge
