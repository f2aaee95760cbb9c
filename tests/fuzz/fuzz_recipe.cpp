// Recipe parser: any text. An accepted recipe plans pairs whose drawn values
// pass their operator's validation.

#include <string>

#include "fuzz_support.hpp"
#include "opforge/datagen/plan.hpp"
#include "opforge/datagen/recipe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const std::string text(bytes.begin(), bytes.end());
    const datagen::Recipe recipe = datagen::parse_recipe(text, "fuzz/recipe.yaml");
    fuzz::require(!recipe.operators.empty() && recipe.pairs_per_source >= 1, "recipe shape");
    const datagen::SourceImage source{.path = "s.png", .name = "s.png", .id = 42};
    for (int p = 0; p < std::min(recipe.pairs_per_source, 8); ++p) {
      // Throws Error only if a drawn value failed validation: a recipe bug.
      const datagen::PairPlan plan = datagen::plan_pair(recipe, source, 0, 1, p);
      fuzz::require(plan.op != nullptr && plan.op->entry != nullptr, "planned operator");
    }
  });
}
