#pragma once
// WebDataset tar shards: for each pair, in key order, the members
// KEY.input.EXT, KEY.output.EXT and KEY.json (its metadata row). Tar headers
// are POSIX ustar with fixed owner, mode and mtime 0, so shards are
// byte-identical whenever the pairs are.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace opforge::datagen {

/// Writes DIR/webdataset/NAME-000000.tar … (shard_pairs rows each, the last
/// one shorter) from rows 0..count−1 (`row(i)` reads row i; rows are read one
/// at a time, so datasets larger than memory work) and returns the brace
/// pattern "webdataset/NAME-{000000..000002}.tar". Throws WriteError when a
/// shard cannot be written (no partial shard is left under its final name).
std::string write_webdataset(const std::filesystem::path& dir, const std::string& name, std::size_t count,
                             const std::function<nlohmann::json(std::size_t)>& row, int shard_pairs);

}  // namespace opforge::datagen
