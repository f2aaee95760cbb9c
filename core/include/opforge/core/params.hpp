#pragma once
// Parameter specifications and validated parameter values.
//
// Every operator parameter is described once by a ParamSpec: name, type,
// default, valid range, natural sampling scale and a one-line doc. The
// operator registry validates user input against these specs in one place
// (`resolve_params` / `validate_params`); operators receive only values that
// passed. The CLI, datagen recipes and docs/operators.md all read the same specs.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace opforge {

enum class ParamType { real, integer, choice, text };
/// How a parameter is naturally sampled (datagen's default for a range).
enum class SamplingScale { log, linear, integer, choice, fixed };

std::string_view to_string(ParamType t);
std::string_view to_string(SamplingScale s);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::real;
  SamplingScale scale = SamplingScale::linear;
  double default_number = 0;            ///< real/integer default
  std::string default_choice;           ///< choice/text default
  double min = 0, max = 0;              ///< real/integer bounds
  bool min_open = false, max_open = false;
  std::vector<std::string> choices;     ///< valid values of a choice parameter
  std::string text_format;              ///< what a text parameter accepts
  std::string doc;

  /// "(0, 1]", "1..10" or "pcg | direct".
  std::string range_text() const;
  std::string default_text() const;
  /// True when `v` lies in the valid range (ignores the type).
  bool in_range(double v) const;
};

/// A real parameter on [min, max] with optionally open ends.
ParamSpec real_param(std::string name, double default_value, double min, double max, bool min_open,
                     bool max_open, SamplingScale scale, std::string doc);
/// An integer parameter on min..max (inclusive).
ParamSpec integer_param(std::string name, std::int64_t default_value, std::int64_t min, std::int64_t max,
                        std::string doc);
/// One of a fixed list of strings.
ParamSpec choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                       std::string doc);

/// Free-form text whose format the operator checks (a file name, "r,g,b");
/// `format` describes the valid values in messages and docs. Never sampled.
ParamSpec text_param(std::string name, std::string default_value, std::string format, std::string doc);

/// A parameter value: a number (integers are whole doubles) or a choice string.
using ParamValue = std::variant<double, std::string>;

/// Validated values for every parameter of one operator.
class ParamValues {
 public:
  void set(const std::string& name, ParamValue value) { values_[name] = std::move(value); }
  bool contains(const std::string& name) const { return values_.count(name) != 0; }
  double number(const std::string& name) const;
  std::int64_t integer(const std::string& name) const;
  const std::string& choice(const std::string& name) const;
  const std::map<std::string, ParamValue>& all() const { return values_; }

 private:
  std::map<std::string, ParamValue> values_;
};

/// Formats a value for messages, metadata and file names (shortest round-trip
/// decimal for numbers).
std::string format_value(const ParamValue& v);

/// Parses NAME=VALUE strings from the CLI or a recipe against `specs` and fills
/// defaults. Throws opforge::Error naming `op`, the parameter and the valid
/// range for unknown names, unparsable or non-finite numbers, non-integers for
/// integer parameters, out-of-range values and unknown choices.
ParamValues resolve_params(std::string_view op, std::span<const ParamSpec> specs,
                           const std::map<std::string, std::string>& text);

/// Checks already-typed values (e.g. sampled by datagen) and fills defaults;
/// same errors as resolve_params.
ParamValues validate_params(std::string_view op, std::span<const ParamSpec> specs, const ParamValues& values);

/// Parses a finite decimal number, the whole string; nullopt-like false on failure.
bool parse_number(std::string_view text, double& out);

}  // namespace opforge
