#pragma once
// opforge's own version (the CMake project version), recorded in every
// dataset row next to the operator's version.

#include <string_view>

namespace opforge {

std::string_view opforge_version();

}  // namespace opforge
