#pragma once
// SHA-256 (FIPS 180-4), for dataset provenance: every datagen row records the
// hash of its source and of the files it wrote, and --resume trusts a pair
// only when its files still hash to what the row says.

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace opforge {

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::uint8_t> bytes);
  void update(std::string_view text);
  /// The digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> finish();
  /// The digest as 64 lower-case hex digits.
  std::string finish_hex();

 private:
  void compress(const std::uint8_t* block);
  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

/// Hex SHA-256 of a buffer.
std::string sha256_hex(std::span<const std::uint8_t> bytes);
/// Hex SHA-256 of a file's content; throws Error naming the path when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace opforge
