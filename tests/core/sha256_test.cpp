#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/core/sha256.hpp"
#include "test_support.hpp"

namespace opforge {
namespace {

// FIPS 180-2 appendix B / NIST CAVS example vectors.
TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.update(std::string_view("abc"));
  EXPECT_EQ(abc.finish_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 two_blocks;
  two_blocks.update(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"));
  EXPECT_EQ(two_blocks.finish_hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) million.update(chunk);
  EXPECT_EQ(million.finish_hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, SplitUpdatesEqualOneUpdate) {
  std::vector<std::uint8_t> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 31 + 7);
  const std::string whole = sha256_hex(data);
  for (std::size_t split : {0, 1, 55, 56, 63, 64, 65, 999}) {
    Sha256 h;
    h.update(std::span(data.data(), split));
    h.update(std::span(data.data() + split, data.size() - split));
    EXPECT_EQ(h.finish_hex(), whole) << "split at " << split;
  }
}

TEST(Sha256, FileMatchesBufferAndMissingFileIsAnError) {
  const auto dir = test::scratch_dir("sha256");
  std::vector<std::uint8_t> data(200000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i ^ (i >> 8));
  write_file_atomic(dir / "f.bin", data);
  EXPECT_EQ(sha256_file_hex(dir / "f.bin"), sha256_hex(data));
  EXPECT_THROW(sha256_file_hex(dir / "missing.bin"), Error);
}

}  // namespace
}  // namespace opforge
