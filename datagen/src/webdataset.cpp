#include "webdataset.hpp"

#include <array>
#include <cstdio>
#include <cstring>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/datagen/plan.hpp"

namespace opforge::datagen {
namespace fs = std::filesystem;

namespace {

void octal(char* field, std::size_t width, std::uint64_t value) {
  // width − 1 octal digits and a NUL, zero-padded (ustar numeric fields).
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1), static_cast<unsigned long long>(value));
}

void write_member(AtomicFileWriter& out, const std::string& name, const std::vector<std::uint8_t>& content) {
  if (name.size() > 99) throw Error("WebDataset member name '" + name + "' is longer than 99 bytes");
  std::array<char, 512> header{};
  std::memcpy(header.data(), name.data(), name.size());
  octal(&header[100], 8, 0644);           // mode
  octal(&header[108], 8, 0);              // uid
  octal(&header[116], 8, 0);              // gid
  octal(&header[124], 12, content.size());
  octal(&header[136], 12, 0);             // mtime: fixed, for reproducible shards
  std::memset(&header[148], ' ', 8);      // checksum field counts as spaces
  header[156] = '0';                      // regular file
  std::memcpy(&header[257], "ustar", 6);  // magic "ustar\0"
  std::memcpy(&header[263], "00", 2);     // version
  unsigned sum = 0;
  for (char c : header) sum += static_cast<unsigned char>(c);
  std::snprintf(&header[148], 8, "%06o", sum);  // six digits, NUL, then the space already there
  out.write(header.data(), header.size());
  out.write(content.data(), content.size());
  static const std::array<char, 512> zeros{};
  const std::size_t pad = (512 - content.size() % 512) % 512;
  out.write(zeros.data(), pad);
}

std::string member_extension(const std::string& file_name) { return fs::path(file_name).extension().string(); }

}  // namespace

std::string write_webdataset(const fs::path& dir, const std::string& name, std::size_t count,
                             const std::function<nlohmann::json(std::size_t)>& row_at, int shard_pairs) {
  const fs::path wds = dir / "webdataset";
  std::error_code ec;
  fs::remove_all(wds, ec);
  fs::create_directories(wds, ec);
  if (ec) throw WriteError("cannot create '" + wds.string() + "': " + ec.message(), ec.value());
  const std::size_t per = static_cast<std::size_t>(shard_pairs);
  const std::size_t shards = count == 0 ? 0 : (count + per - 1) / per;
  for (std::size_t s = 0; s < shards; ++s) {
    AtomicFileWriter out(wds / (name + "-" + zero_padded(s, 6) + ".tar"));
    for (std::size_t i = s * per; i < std::min(count, (s + 1) * per); ++i) {
      const nlohmann::json row = row_at(i);
      const std::string key = row["key"];
      const std::string in_name = row["input_file_name"], out_name = row["output_file_name"];
      write_member(out, key + ".input" + member_extension(in_name), read_file(dir / in_name, true));
      write_member(out, key + ".output" + member_extension(out_name), read_file(dir / out_name, true));
      const std::string json = row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      write_member(out, key + ".json", std::vector<std::uint8_t>(json.begin(), json.end()));
    }
    static const std::array<char, 1024> end_of_archive{};
    out.write(end_of_archive.data(), end_of_archive.size());
    out.commit();
  }
  if (shards == 0) return "";
  return "webdataset/" + name + "-{" + zero_padded(0, 6) + ".." + zero_padded(shards - 1, 6) + "}.tar";
}

}  // namespace opforge::datagen
