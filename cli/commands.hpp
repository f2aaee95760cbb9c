#pragma once
// The `opforge` subcommands. Each takes the arguments after its name and
// returns the process exit status; opforge::Error and usage errors propagate
// to main(), which prints one line and exits 2.

#include <string>
#include <vector>

namespace opforge::cli {

using Args = std::vector<std::string>;

int list_command(const Args& args);
int apply_command(const Args& args);
int metrics_command(const Args& args);

/// A usage error (unknown option, missing argument): exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace opforge::cli
