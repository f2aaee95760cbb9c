#include "opforge/core/version.hpp"

namespace opforge {

std::string_view opforge_version() { return OPFORGE_VERSION; }

}  // namespace opforge
