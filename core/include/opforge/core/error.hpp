#pragma once
// opforge::Error — the one exception type for bad input and bad usage.
//
// The message is a complete, single-line sentence that names the file,
// operator or parameter at fault and, where there is one, the valid range.
// The CLI prints it verbatim to stderr and exits with status 2.

#include <stdexcept>
#include <string>

namespace opforge {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace opforge
