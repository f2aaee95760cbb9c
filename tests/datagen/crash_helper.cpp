// A datagen run with a fault injected: pairs of sources whose name contains
// CRASH_ON die by SIGSEGV in the operator stage, as a bug in an operator
// would. process_test.cpp runs it as a child process.
//
//   datagen_crash_helper RECIPE OUT CRASH_ON [--resume]

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "opforge/core/error.hpp"
#include "opforge/datagen/generate.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: datagen_crash_helper RECIPE OUT CRASH_ON [--resume]\n");
    return 64;
  }
  using namespace opforge::datagen;
  const std::string crash_on = argv[3];
  try {
    const Recipe recipe = load_recipe(argv[1]);
    RunOptions options{.out_dir = argv[2], .resume = argc > 4 && std::strcmp(argv[4], "--resume") == 0, .threads = 2};
    options.before_operator = [&](const SourceImage& source, const PairPlan&) {
      if (!crash_on.empty() && source.name.find(crash_on) != std::string::npos) std::raise(SIGSEGV);
    };
    const RunSummary s = generate(recipe, options);
    std::printf("written %zu reused %zu failed %zu crashed %zu\n", s.written, s.reused, s.failed, s.crashed);
    return 0;
  } catch (const opforge::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
