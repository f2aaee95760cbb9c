#pragma once
// The `opforge` subcommands. Each takes the arguments after its name and
// returns the process exit status; opforge::Error and usage errors propagate
// to main(), which prints one line and exits 2.

#include <boost/program_options.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "opforge/core/io.hpp"

namespace opforge::cli {

using Args = std::vector<std::string>;

int list_command(const Args& args);
int apply_command(const Args& args);
int metrics_command(const Args& args);
int datagen_command(const Args& args);
int infer_command(const Args& args);
int model_command(const Args& args);
int train_command(const Args& args);
int eval_command(const Args& args);

/// A usage error (unknown option, missing argument): exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Describes `--threads N` in a command's --help. main() parses the option
/// itself, once for every command that computes, and limits TBB for the
/// command's whole run; commands never see it.
void add_threads_option(boost::program_options::options_description& options);

/// Adds `--max-pixels N` (the decoders' pixel limit, default PIL's) to `options`.
void add_max_pixels_option(boost::program_options::options_description& options);
/// The decode limits --max-pixels asks for.
DecodeLimits decode_limits_option(const boost::program_options::variables_map& vm);

/// The progress display's pieces, one look for every command: a 30-column
/// bar "[#####.........]" for done of total, and the time left "M:SS" at
/// `rate` per second (0:00 before a rate is known).
std::string progress_bar(double done, double total);
std::string time_left(double done, double total, double rate);

/// Parses `args` against `options` plus exactly the positional arguments
/// named in `positional_names` (e.g. {"OP", "IN", "OUT"}) into `vm`. Returns
/// the positionals, or an empty vector when --help was given. Throws
/// UsageError for a wrong count and boost's errors for unknown options.
std::vector<std::string> parse_command_line(const Args& args, const boost::program_options::options_description& options,
                                            const std::vector<std::string>& positional_names,
                                            boost::program_options::variables_map& vm);

}  // namespace opforge::cli
