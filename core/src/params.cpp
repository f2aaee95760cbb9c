#include "opforge/core/params.hpp"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "opforge/core/error.hpp"

namespace opforge {

std::string_view to_string(ParamType t) {
  switch (t) {
    case ParamType::real: return "real";
    case ParamType::integer: return "integer";
    case ParamType::boolean: return "boolean";
    case ParamType::choice: return "choice";
    case ParamType::text: return "text";
  }
  return "?";
}

std::string_view to_string(SamplingScale s) {
  switch (s) {
    case SamplingScale::log: return "log";
    case SamplingScale::linear: return "linear";
    case SamplingScale::integer: return "integer";
    case SamplingScale::choice: return "choice";
    case SamplingScale::fixed: return "fixed";
  }
  return "?";
}

std::string format_value(const ParamValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  const double d = std::get<double>(v);
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, res.ptr);
}

std::string ParamSpec::range_text() const {
  if (type == ParamType::text) return text_format;
  if (type == ParamType::boolean) return "true | false";
  if (type == ParamType::choice) {
    std::string out;
    for (std::size_t i = 0; i < choices.size(); ++i) out += (i ? " | " : "") + choices[i];
    return out;
  }
  if (type == ParamType::integer) {
    return (also_valid ? format_value(*also_valid) + " or " : std::string()) + (odd ? "odd " : "") + format_value(min) +
           ".." + format_value(max);
  }
  return std::string(min_open ? "(" : "[") + format_value(min) + ", " + format_value(max) + (max_open ? ")" : "]");
}

std::string ParamSpec::default_text() const {
  if (type == ParamType::boolean) return default_number != 0 ? "true" : "false";
  return type == ParamType::choice || type == ParamType::text ? default_choice : format_value(default_number);
}

bool ParamSpec::in_range(double v) const {
  if (also_valid && v == *also_valid) return true;
  const bool lo_ok = min_open ? v > min : v >= min;
  const bool hi_ok = max_open ? v < max : v <= max;
  return lo_ok && hi_ok && (!odd || std::fmod(v, 2.0) != 0);
}

bool ParamSpec::covers(double lo, double hi) const {
  if (!in_range(lo) || !in_range(hi)) return false;
  if (type != ParamType::integer || lo == hi) return true;
  if (odd) return false;
  // The extra value joins the range only when it is next to it.
  const double from = also_valid && *also_valid == min - 1 ? *also_valid : min;
  const double to = also_valid && *also_valid == max + 1 ? *also_valid : max;
  return lo >= from && hi <= to;
}

ParamSpec real_param(std::string name, double default_value, Interval valid, SamplingScale scale, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::real;
  s.scale = scale;
  s.default_number = default_value;
  s.min = valid.min;
  s.max = valid.max;
  s.min_open = valid.min_open;
  s.max_open = valid.max_open;
  s.doc = std::move(doc);
  return s;
}

ParamSpec integer_param(std::string name, std::int64_t default_value, IntegerRange valid, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::integer;
  s.scale = SamplingScale::integer;
  s.default_number = static_cast<double>(default_value);
  s.min = static_cast<double>(valid.min);
  s.max = static_cast<double>(valid.max);
  s.odd = valid.odd;
  if (valid.also) s.also_valid = static_cast<double>(*valid.also);
  s.doc = std::move(doc);
  return s;
}

ParamSpec boolean_param(std::string name, bool default_value, std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::boolean;
  s.scale = SamplingScale::choice;
  s.default_number = default_value ? 1 : 0;
  s.doc = std::move(doc);
  return s;
}

ParamSpec choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                       std::string doc) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::choice;
  s.scale = SamplingScale::choice;
  s.default_choice = std::move(default_value);
  s.choices = std::move(choices);
  s.doc = std::move(doc);
  return s;
}

ParamSpec text_param(std::string name, std::string default_value, std::string format, std::string doc,
                     std::function<std::string(const std::string&)> problem) {
  ParamSpec s;
  s.name = std::move(name);
  s.type = ParamType::text;
  s.scale = SamplingScale::fixed;
  s.default_choice = std::move(default_value);
  s.text_format = std::move(format);
  s.text_problem = std::move(problem);
  s.doc = std::move(doc);
  return s;
}

std::string file_problem(const std::string& path) {
  if (path.empty()) return "the file name is empty";
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) return "no such file";
  if (std::filesystem::is_directory(status)) return "it is a directory";
  if (!std::filesystem::is_regular_file(status)) return "not a regular file";
  return "";
}

double ParamValues::number(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end() || !std::holds_alternative<double>(it->second)) {
    throw Error("internal: numeric parameter '" + name + "' was not resolved");
  }
  return std::get<double>(it->second);
}

std::int64_t ParamValues::integer(const std::string& name) const { return static_cast<std::int64_t>(number(name)); }

bool ParamValues::flag(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end() || !std::holds_alternative<bool>(it->second)) {
    throw Error("internal: boolean parameter '" + name + "' was not resolved");
  }
  return std::get<bool>(it->second);
}

const std::string& ParamValues::choice(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end() || !std::holds_alternative<std::string>(it->second)) {
    throw Error("internal: choice/text parameter '" + name + "' was not resolved");
  }
  return std::get<std::string>(it->second);
}

bool parse_number(std::string_view text, double& out) {
  if (text.empty()) return false;
  const char* begin = text.data();
  if (*begin == '+') ++begin;  // from_chars does not accept a leading '+'
  const auto res = std::from_chars(begin, text.data() + text.size(), out);
  return res.ec == std::errc() && res.ptr == text.data() + text.size() && std::isfinite(out);
}

bool parse_unsigned(std::string_view text, std::uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  out = v;
  return true;
}

std::uint64_t parse_seed(std::string_view text, std::string_view what) {
  std::uint64_t seed = 0;
  if (!parse_unsigned(text, seed)) {
    throw Error(std::string(what) + " '" + std::string(text) + "' is invalid; valid: an integer in 0..18446744073709551615");
  }
  return seed;
}

namespace {

const ParamSpec& find_spec(std::string_view op, std::span<const ParamSpec> specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return s;
  }
  std::string valid;
  for (std::size_t i = 0; i < specs.size(); ++i) valid += (i ? ", " : "") + specs[i].name;
  throw Error(std::string(op) + ": unknown parameter '" + name + "'; valid: " + (valid.empty() ? "(none)" : valid));
}

std::string where(std::string_view op, const ParamSpec& s) {
  return std::string(op) + ": parameter '" + s.name + "'";
}

std::string valid_suffix(const ParamSpec& s) {
  return "; valid: " + s.range_text() + " (default " + s.default_text() + ")";
}

void check(std::string_view op, const ParamSpec& s, const ParamValue& v) {
  if (s.type == ParamType::text) {
    if (!std::holds_alternative<std::string>(v)) {
      throw Error(where(op, s) + " = " + format_value(v) + " is not text" + valid_suffix(s));
    }
    const std::string& text = std::get<std::string>(v);
    if (s.text_problem) {
      if (const std::string problem = s.text_problem(text); !problem.empty()) {
        throw Error(where(op, s) + " = '" + text + "' is invalid (" + problem + "); valid: " + s.range_text());
      }
    }
    return;
  }
  if (s.type == ParamType::boolean) {
    if (!std::holds_alternative<bool>(v)) {
      throw Error(where(op, s) + " = '" + format_value(v) + "' is not true or false" + valid_suffix(s));
    }
    return;
  }
  if (s.type == ParamType::choice) {
    const auto* str = std::get_if<std::string>(&v);
    if (!str) throw Error(where(op, s) + " = " + format_value(v) + " is not one of the choices" + valid_suffix(s));
    for (const auto& c : s.choices) {
      if (c == *str) return;
    }
    throw Error(where(op, s) + " = '" + *str + "' is not one of the choices" + valid_suffix(s));
  }
  const auto* d = std::get_if<double>(&v);
  if (!d) throw Error(where(op, s) + " = '" + format_value(v) + "' is not a number" + valid_suffix(s));
  if (!std::isfinite(*d)) throw Error(where(op, s) + " = " + format_value(v) + " is not finite" + valid_suffix(s));
  if (s.type == ParamType::integer && *d != std::floor(*d)) {
    throw Error(where(op, s) + " = " + format_value(v) + " is not an integer" + valid_suffix(s));
  }
  if (!s.in_range(*d)) throw Error(where(op, s) + " = " + format_value(v) + " is out of range" + valid_suffix(s));
}

ParamValues fill_defaults(std::string_view op, std::span<const ParamSpec> specs, ParamValues values) {
  for (const auto& s : specs) {
    if (values.contains(s.name)) continue;
    if (s.required) throw Error(where(op, s) + " is required; valid: " + s.range_text());
    if (s.type == ParamType::choice || s.type == ParamType::text) {
      values.set(s.name, s.default_choice);
    } else if (s.type == ParamType::boolean) {
      values.set(s.name, s.default_number != 0);
    } else {
      values.set(s.name, s.default_number);
    }
  }
  return values;
}

}  // namespace

ParamValues validate_params(std::string_view op, std::span<const ParamSpec> specs, const ParamValues& values) {
  for (const auto& [name, v] : values.all()) check(op, find_spec(op, specs, name), v);
  return fill_defaults(op, specs, values);
}

ParamValues resolve_params(std::string_view op, std::span<const ParamSpec> specs,
                           const std::map<std::string, std::string>& text) {
  ParamValues values;
  for (const auto& [name, raw] : text) {
    const ParamSpec& s = find_spec(op, specs, name);
    if (s.type == ParamType::choice || s.type == ParamType::text) {
      values.set(name, raw);
    } else if (s.type == ParamType::boolean) {
      if (raw != "true" && raw != "false") {
        throw Error(where(op, s) + " = '" + raw + "' is not true or false" + valid_suffix(s));
      }
      values.set(name, raw == "true");
    } else {
      double d = 0;
      if (!parse_number(raw, d)) throw Error(where(op, s) + " = '" + raw + "' is not a number" + valid_suffix(s));
      values.set(name, d);
    }
  }
  return validate_params(op, specs, values);
}

}  // namespace opforge
