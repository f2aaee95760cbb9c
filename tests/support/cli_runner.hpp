#pragma once
// Running the `opforge` executable from a test: exit status, stdout, stderr.

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace opforge::test {

struct Result {
  int status = -1;  ///< the exit status; 128 + N when killed by signal N
  std::string out, err;
  int err_lines() const { return static_cast<int>(std::count(err.begin(), err.end(), '\n')); }
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A shell word for `s`.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs OPFORGE_CLI with `args` through /bin/sh, after `prefix` (shell
/// commands such as "ulimit -f 8;"), with stdout and stderr captured via
/// files in `dir`. A timeout of `seconds` (0: none) kills it with SIGKILL.
inline Result run(const std::vector<std::string>& args, const std::filesystem::path& dir, const std::string& prefix = "",
                  int seconds = 0) {
  std::string cmd = prefix + (seconds > 0 ? "exec timeout -s KILL " + std::to_string(seconds) + " " : "exec ") +
                    quote(OPFORGE_CLI);
  for (const auto& a : args) {
    cmd += ' ';
    cmd += quote(a);
  }
  cmd += " > " + quote((dir / "stdout.txt").string()) + " 2> " + quote((dir / "stderr.txt").string());
  const int raw = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = slurp(dir / "stdout.txt");
  r.err = slurp(dir / "stderr.txt");
  std::filesystem::remove(dir / "stdout.txt");
  std::filesystem::remove(dir / "stderr.txt");
  return r;
}

}  // namespace opforge::test
