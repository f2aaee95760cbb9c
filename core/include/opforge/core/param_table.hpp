#pragma once
// Each parameter of an operator declared once.
//
// An operator's typed parameters are a plain struct whose member initialisers
// are the defaults. Its ParamTable has one row per parameter: the member it
// fills, the registry name, the valid range, the sampling scale and a doc
// line. The ParamSpecs (`opforge list`, recipes, docs/operators.md) and the
// conversions between the struct and ParamValues, both ways, all follow from
// the table, so a default or a range cannot disagree between them.
//
//   struct L0SmoothParams {
//     double lambda = 0.02;
//     double kappa = 2.0;
//   };
//   using Table = ParamTable<L0SmoothParams>;
//   const Table table{"l0_smooth", {
//       Table::real(&L0SmoothParams::lambda, "lambda", Interval::open_closed(0, 1), SamplingScale::log, "…"),
//       Table::real(&L0SmoothParams::kappa, "kappa", Interval::open_closed(1, 10), SamplingScale::linear, "…"),
//   }};
//
// A member may belong to a base of the struct, so a registry call can extend
// the typed parameters with what only the registry needs (which output to
// write, a file to read).

#include <concepts>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/core/params.hpp"

namespace opforge {

/// How a text parameter reads into a member of type T and is written back:
/// `parse` returns what is wrong with the text ("" when nothing is) and fills
/// the value; `print` gives the text of a value (the default's, for docs).
template <typename T>
struct TextForm {
  std::string format;  ///< what the text may be, for messages and docs
  std::function<std::string(const std::string& text, T& value)> parse;
  std::function<std::string(const T& value)> print;
};

template <typename P>
class ParamTable {
 public:
  /// One parameter: its spec and how it reads and writes a P.
  struct Field {
    ParamSpec spec;
    std::function<ParamValue(const P&)> get;
    std::function<void(P&, const ParamValue&)> set;
  };

  /// A real parameter on `valid`.
  template <typename Base>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field real(double Base::*member, std::string name, Interval valid, SamplingScale scale, std::string doc) {
    return {real_param(std::move(name), P{}.*member, valid, scale, std::move(doc)),
            [member](const P& p) { return ParamValue(p.*member); },
            [member](P& p, const ParamValue& v) { p.*member = std::get<double>(v); }};
  }

  /// An integer parameter (stored in an int or another integer type).
  template <typename Base, std::integral Int>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field integer(Int Base::*member, std::string name, IntegerRange valid, std::string doc) {
    return {integer_param(std::move(name), static_cast<std::int64_t>(P{}.*member), valid, std::move(doc)),
            [member](const P& p) { return ParamValue(static_cast<double>(p.*member)); },
            [member](P& p, const ParamValue& v) { p.*member = static_cast<Int>(std::get<double>(v)); }};
  }

  /// true or false.
  template <typename Base>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field boolean(bool Base::*member, std::string name, std::string doc) {
    return {boolean_param(std::move(name), P{}.*member, std::move(doc)),
            [member](const P& p) { return ParamValue(p.*member); },
            [member](P& p, const ParamValue& v) { p.*member = std::get<bool>(v); }};
  }

  /// One of `options` (its name and the member's value for it), e.g. an enum.
  template <typename Base, typename T>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field choice(T Base::*member, std::string name, std::vector<std::pair<std::string, T>> options,
                      std::string doc) {
    std::vector<std::string> names;
    std::string default_name;
    for (const auto& [option, value] : options) {
      names.push_back(option);
      if (value == P{}.*member) default_name = option;
    }
    if (default_name.empty()) throw Error("internal: parameter '" + name + "' has a default that is not one of its choices");
    return {choice_param(std::move(name), default_name, std::move(names), std::move(doc)),
            [member, options](const P& p) {
              for (const auto& [option, value] : options) {
                if (value == p.*member) return ParamValue(option);
              }
              return ParamValue(std::string());  // not a choice: validation names it
            },
            [member, options](P& p, const ParamValue& v) {
              for (const auto& [option, value] : options) {
                if (option == std::get<std::string>(v)) p.*member = value;
              }
            }};
  }

  /// Free text in a std::string member; `problem` checks a value (see
  /// ParamSpec::text_problem). Never sampled.
  template <typename Base>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field text(std::string Base::*member, std::string name, std::string format, std::string doc,
                    std::function<std::string(const std::string&)> problem = nullptr) {
    return {text_param(std::move(name), P{}.*member, std::move(format), std::move(doc), std::move(problem)),
            [member](const P& p) { return ParamValue(p.*member); },
            [member](P& p, const ParamValue& v) { p.*member = std::get<std::string>(v); }};
  }

  /// Text that every call must give (a file name), in a std::string member.
  template <typename Base>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field required_text(std::string Base::*member, std::string name, std::string format, std::string doc,
                             std::function<std::string(const std::string&)> problem) {
    Field f = text(member, std::move(name), std::move(format), std::move(doc), std::move(problem));
    f.spec.required = true;
    return f;
  }

  /// Text read into a member of another type through `form` (a colour
  /// written "r,g,b", a path where "builtin" means none).
  template <typename Base, typename T>
    requires std::derived_from<P, Base> || std::same_as<P, Base>
  static Field text_as(T Base::*member, std::string name, TextForm<T> form, std::string doc) {
    const auto problem = [parse = form.parse](const std::string& text) {
      T ignored{};
      return parse(text, ignored);
    };
    return {text_param(std::move(name), form.print(P{}.*member), form.format, std::move(doc), problem),
            [member, print = form.print](const P& p) { return ParamValue(print(p.*member)); },
            [member, parse = form.parse](P& p, const ParamValue& v) { parse(std::get<std::string>(v), p.*member); }};
  }

  /// The rows of `base`'s table, reading and writing that part of a P.
  template <typename Base>
    requires std::derived_from<P, Base>
  static std::vector<Field> fields_of(const ParamTable<Base>& base) {
    std::vector<Field> out;
    for (const auto& f : base.fields()) {
      out.push_back({f.spec, [get = f.get](const P& p) { return get(p); },
                     [set = f.set](P& p, const ParamValue& v) { set(p, v); }});
    }
    return out;
  }

  /// `check` is a rule across parameters ("low below high"): it returns what
  /// is wrong with a struct whose every field is valid, "" when nothing is.
  ParamTable(std::string op, std::vector<Field> fields, std::function<std::string(const P&)> check = nullptr)
      : op_(std::move(op)), fields_(std::move(fields)), check_(std::move(check)) {
    for (const auto& f : fields_) specs_.push_back(f.spec);
  }

  const std::string& op() const { return op_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<Field>& fields() const { return fields_; }

  /// Every parameter's value in `p`.
  ParamValues to_values(const P& p) const {
    ParamValues values;
    for (const auto& f : fields_) values.set(f.spec.name, f.get(p));
    return values;
  }

  /// The struct of values that passed validate_params(op(), specs(), …).
  P from_values(const ParamValues& valid) const {
    P p{};
    for (const auto& f : fields_) f.set(p, valid.all().at(f.spec.name));
    return p;
  }

  /// The rule across parameters for values that passed their specs; throws
  /// Error "op: problem".
  void check(const P& p) const {
    if (!check_) return;
    if (const std::string problem = check_(p); !problem.empty()) throw Error(op_ + ": " + problem);
  }

  /// The typed API's one validation: each field against its spec, then the
  /// rule across them. Throws Error naming the parameter and its valid range.
  void validate(const P& p) const {
    validate_params(op_, specs_, to_values(p));
    check(p);
  }

 private:
  std::string op_;
  std::vector<Field> fields_;
  std::vector<ParamSpec> specs_;
  std::function<std::string(const P&)> check_;
};

}  // namespace opforge
