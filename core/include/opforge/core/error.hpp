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

/// Writing a file failed (disk full, quota, permissions, I/O error). Datagen
/// treats it as fatal: carrying on would fail every later pair the same way.
class WriteError : public Error {
 public:
  WriteError(const std::string& message, int error_number) : Error(message), error_number_(error_number) {}
  int error_number() const { return error_number_; }

 private:
  int error_number_;
};

}  // namespace opforge
