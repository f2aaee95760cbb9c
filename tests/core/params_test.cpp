#include "opforge/core/params.hpp"

#include "opforge/core/param_table.hpp"

#include <gtest/gtest.h>

#include "opforge/core/error.hpp"

namespace opforge {
namespace {

const std::vector<ParamSpec>& specs() {
  static const std::vector<ParamSpec> s = {
      real_param("lambda", 0.02, Interval::open_closed(0, 1), SamplingScale::log, "weight"),
      integer_param("iterations", 4, IntegerRange(1, 10), "loops"),
      choice_param("solver", "pcg", {"pcg", "direct"}, "solver"),
  };
  return s;
}

std::string error_of(const std::map<std::string, std::string>& text) {
  try {
    resolve_params("op", specs(), text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Params, FillsDefaultsAndParsesValues) {
  const auto v = resolve_params("op", specs(), {{"lambda", "0.5"}, {"solver", "direct"}});
  EXPECT_EQ(v.number("lambda"), 0.5);
  EXPECT_EQ(v.integer("iterations"), 4);
  EXPECT_EQ(v.choice("solver"), "direct");
  EXPECT_EQ(resolve_params("op", specs(), {{"lambda", "1"}}).number("lambda"), 1.0);  // closed upper end
  EXPECT_EQ(resolve_params("op", specs(), {{"lambda", "+1e-3"}}).number("lambda"), 1e-3);
}

TEST(Params, ErrorsNameTheParameterAndTheValidRange) {
  EXPECT_EQ(error_of({{"lambda", "-1"}}),
            "op: parameter 'lambda' = -1 is out of range; valid: (0, 1] (default 0.02)");
  EXPECT_EQ(error_of({{"lambda", "0"}}), "op: parameter 'lambda' = 0 is out of range; valid: (0, 1] (default 0.02)");
  EXPECT_EQ(error_of({{"lambda", "abc"}}),
            "op: parameter 'lambda' = 'abc' is not a number; valid: (0, 1] (default 0.02)");
  EXPECT_EQ(error_of({{"lambda", "nan"}}),
            "op: parameter 'lambda' = 'nan' is not a number; valid: (0, 1] (default 0.02)");
  EXPECT_EQ(error_of({{"lambda", "0.5x"}}),
            "op: parameter 'lambda' = '0.5x' is not a number; valid: (0, 1] (default 0.02)");
  EXPECT_EQ(error_of({{"iterations", "2.5"}}),
            "op: parameter 'iterations' = 2.5 is not an integer; valid: 1..10 (default 4)");
  EXPECT_EQ(error_of({{"iterations", "11"}}),
            "op: parameter 'iterations' = 11 is out of range; valid: 1..10 (default 4)");
  EXPECT_EQ(error_of({{"solver", "lu"}}),
            "op: parameter 'solver' = 'lu' is not one of the choices; valid: pcg | direct (default pcg)");
  EXPECT_EQ(error_of({{"lamda", "0.1"}}), "op: unknown parameter 'lamda'; valid: lambda, iterations, solver");
}

TEST(Params, TypedValuesAreCheckedToo) {
  ParamValues v;
  v.set("lambda", 3.0);
  EXPECT_THROW(validate_params("op", specs(), v), Error);
  ParamValues w;
  w.set("solver", 1.0);
  EXPECT_THROW(validate_params("op", specs(), w), Error);
}

TEST(Params, FormatsShortestRoundTrip) {
  EXPECT_EQ(format_value(0.1), "0.1");
  EXPECT_EQ(format_value(2.0), "2");
  EXPECT_EQ(format_value(std::string("pcg")), "pcg");
  EXPECT_EQ(format_value(true), "true");
  EXPECT_EQ(format_value(ParamValue("text")), "text");  // a string literal is text, not a boolean
}

TEST(Params, BooleansAreTrueOrFalse) {
  const std::vector<ParamSpec> flags = {boolean_param("clip", true, "clip")};
  EXPECT_EQ(flags[0].range_text(), "true | false");
  EXPECT_EQ(flags[0].default_text(), "true");
  EXPECT_TRUE(resolve_params("op", flags, {}).flag("clip"));
  EXPECT_FALSE(resolve_params("op", flags, {{"clip", "false"}}).flag("clip"));
  try {
    resolve_params("op", flags, {{"clip", "1"}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "op: parameter 'clip' = '1' is not true or false; valid: true | false (default true)");
  }
  ParamValues text;
  text.set("clip", std::string("true"));
  EXPECT_THROW(validate_params("op", flags, text), Error);
}

TEST(Params, IntegerRangesSayTheirRealConstraints) {
  const ParamSpec window = integer_param("window", 15, IntegerRange(3, 61).odd_only(), "");
  EXPECT_EQ(window.range_text(), "odd 3..61");
  EXPECT_TRUE(window.in_range(3));
  EXPECT_FALSE(window.in_range(4));
  EXPECT_FALSE(window.covers(3, 7));  // a sampled range would draw even sizes
  EXPECT_TRUE(window.covers(5, 5));
  const ParamSpec samples = integer_param("samples", 0, IntegerRange(2, 256).or_also(0), "");
  EXPECT_EQ(samples.range_text(), "0 or 2..256");
  EXPECT_TRUE(samples.in_range(0));
  EXPECT_FALSE(samples.in_range(1));
  EXPECT_TRUE(samples.in_range(2));
  EXPECT_FALSE(samples.covers(0, 10));
  EXPECT_TRUE(samples.covers(2, 10));
  const std::vector<ParamSpec> specs = {samples};
  try {
    resolve_params("llf", specs, {{"samples", "1"}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "llf: parameter 'samples' = 1 is out of range; valid: 0 or 2..256 (default 0)");
  }
  EXPECT_TRUE(integer_param("n", 1, IntegerRange(1, 5).or_also(0), "").covers(0, 5));  // 0 is next to 1..5
}

// A typed struct, its table, and the conversions the table gives.
enum class Mode { fast, exact };
struct ToyParams {
  double weight = 0.5;
  int steps = 3;
  bool clip = true;
  Mode mode = Mode::exact;
  double low = 0.1, high = 0.9;
};
struct ToyCall : ToyParams {
  std::string file = "none";
};

const ParamTable<ToyParams>& toy_table() {
  using T = ParamTable<ToyParams>;
  static const T table{
      "toy",
      {
          T::real(&ToyParams::weight, "weight", Interval::open_closed(0, 1), SamplingScale::log, "w"),
          T::integer(&ToyParams::steps, "steps", IntegerRange(1, 9), "s"),
          T::boolean(&ToyParams::clip, "clip", "c"),
          T::choice(&ToyParams::mode, "mode", {{"fast", Mode::fast}, {"exact", Mode::exact}}, "m"),
          T::real(&ToyParams::low, "low", Interval::closed(0, 1), SamplingScale::linear, "l"),
          T::real(&ToyParams::high, "high", Interval::closed(0, 1), SamplingScale::linear, "h"),
      },
      [](const ToyParams& p) { return p.low < p.high ? "" : "low must be below high"; }};
  return table;
}

TEST(ParamTable, DefaultsComeFromTheStruct) {
  const auto& specs = toy_table().specs();
  ASSERT_EQ(specs.size(), 6u);
  EXPECT_EQ(specs[0].default_number, 0.5);
  EXPECT_EQ(specs[0].range_text(), "(0, 1]");
  EXPECT_EQ(specs[1].default_number, 3);
  EXPECT_EQ(specs[2].type, ParamType::boolean);
  EXPECT_EQ(specs[2].default_text(), "true");
  EXPECT_EQ(specs[3].default_choice, "exact");
  EXPECT_EQ(specs[3].range_text(), "fast | exact");
  // The defaults of the specs are the struct's: resolving nothing gives ToyParams{}.
  const ToyParams p = toy_table().from_values(resolve_params("toy", specs, {}));
  EXPECT_EQ(p.weight, 0.5);
  EXPECT_EQ(p.steps, 3);
  EXPECT_TRUE(p.clip);
  EXPECT_EQ(p.mode, Mode::exact);
}

TEST(ParamTable, ConvertsBothWays) {
  const ToyParams p{.weight = 0.25, .steps = 7, .clip = false, .mode = Mode::fast, .low = 0.2, .high = 0.3};
  const ParamValues v = toy_table().to_values(p);
  EXPECT_EQ(v.number("weight"), 0.25);
  EXPECT_EQ(v.integer("steps"), 7);
  EXPECT_FALSE(v.flag("clip"));
  EXPECT_EQ(v.choice("mode"), "fast");
  const ToyParams q = toy_table().from_values(validate_params("toy", toy_table().specs(), v));
  EXPECT_EQ(q.weight, p.weight);
  EXPECT_EQ(q.steps, p.steps);
  EXPECT_EQ(q.clip, p.clip);
  EXPECT_EQ(q.mode, p.mode);
  EXPECT_EQ(q.low, p.low);
  EXPECT_EQ(q.high, p.high);
}

TEST(ParamTable, ValidatesTheStructOnceWithTheRuleAcrossFields) {
  EXPECT_NO_THROW(toy_table().validate({}));
  try {
    toy_table().validate({.steps = 10});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "toy: parameter 'steps' = 10 is out of range; valid: 1..9 (default 3)");
  }
  try {
    toy_table().validate({.low = 0.5, .high = 0.5});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "toy: low must be below high");
  }
  EXPECT_THROW(toy_table().validate({.mode = static_cast<Mode>(7)}), Error);  // not one of the choices
}

TEST(ParamTable, ExtendsABaseTable) {
  using T = ParamTable<ToyCall>;
  std::vector<T::Field> fields = T::fields_of(toy_table());
  fields.push_back(T::text(&ToyCall::file, "file", "a name", "f"));
  const T call("toy", std::move(fields));
  EXPECT_EQ(call.specs().size(), 7u);
  EXPECT_EQ(call.specs().back().default_choice, "none");
  ToyCall c;
  c.weight = 0.75;
  c.file = "x.png";
  const ToyCall d = call.from_values(validate_params("toy", call.specs(), call.to_values(c)));
  EXPECT_EQ(d.weight, 0.75);
  EXPECT_EQ(d.file, "x.png");
}

}  // namespace
}  // namespace opforge
