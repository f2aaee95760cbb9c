#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>

#include "commands.hpp"
#include "opforge/operators/registry.hpp"

namespace opforge::cli {
namespace po = boost::program_options;

int list_command(const Args& args) {
  po::options_description opts("opforge list [--json | --markdown]");
  opts.add_options()("help,h", "this help")("json", "every operator with its parameter specs, as JSON")(
      "markdown", "docs/operators.md, generated from the registry");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  if (vm.count("help")) {
    std::cout << opts;
    return 0;
  }
  if (vm.count("json")) {
    std::cout << registry_json() << "\n";
    return 0;
  }
  if (vm.count("markdown")) {
    std::cout << registry_markdown();
    return 0;
  }
  for (const auto& e : all_operators()) {
    std::cout << e.name << "  (" << to_string(e.kind) << ", v" << e.version << ")  " << e.summary << "\n";
    for (const auto& s : e.params) {
      // Fixed columns, each followed by at least one space however long the value.
      std::cout << "    " << std::left << std::setw(15) << s.name + " " << std::setw(9) << std::string(to_string(s.type)) + " "
                << "default " << std::setw(13) << s.default_text() + " " << "valid " << s.range_text() << "  ("
                << to_string(s.scale) << ")\n";
    }
  }
  return 0;
}

}  // namespace opforge::cli
