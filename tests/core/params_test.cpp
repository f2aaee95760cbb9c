#include "opforge/core/params.hpp"

#include <gtest/gtest.h>

#include "opforge/core/error.hpp"

namespace opforge {
namespace {

const std::vector<ParamSpec>& specs() {
  static const std::vector<ParamSpec> s = {
      real_param("lambda", 0.02, 0.0, 1.0, true, false, SamplingScale::log, "weight"),
      integer_param("iterations", 4, 1, 10, "loops"),
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
}

}  // namespace
}  // namespace opforge
