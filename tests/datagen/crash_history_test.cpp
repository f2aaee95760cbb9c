// Reading the crash journal back: a crash is a process death, however many
// of its threads faulted at once and wrote a line.

#include <gtest/gtest.h>

#include "crash_guard.hpp"
#include "datagen_fixtures.hpp"

namespace opforge::datagen {
namespace {

TEST(CrashHistory, ThreadsThatFaultTogetherAreOneCrash) {
  const auto dir = test::scratch_dir("datagen-crash-history");
  const auto journal = dir / "crashes.jsonl";
  const std::string line_a = R"({"key":"000004_00","source_index":4,"stage":"operator","operator":"l0_smooth","run":"7-1","signal":"SIGSEGV"})";
  const std::string line_b = R"({"key":"000004_01","source_index":4,"stage":"operator","operator":"l0_smooth","run":"7-1","signal":"SIGSEGV"})";
  test::write_text_file(journal, line_a + "\n" + line_b + "\n");
  const std::pair<std::size_t, std::string> l0{4, "l0_smooth"}, decoding{2, ""};
  CrashHistory h = read_crash_history(journal);
  EXPECT_EQ(h.by_source[l0], 1);  // two threads, one death
  EXPECT_EQ(h.by_key["000004_00"], 1);
  EXPECT_EQ(h.keys[l0].size(), 2u);

  // A second run dies on the source: now it has crashed the process twice.
  const std::string line_c = R"({"key":"000004_01","source_index":4,"stage":"operator","operator":"l0_smooth","run":"9-5","signal":"SIGBUS"})";
  test::write_text_file(journal, line_a + "\n" + line_b + "\n" + line_c + "\n" + R"({"key":"0000)");  // and a torn line
  h = read_crash_history(journal);
  EXPECT_EQ(h.by_source[l0], 2);
  EXPECT_EQ(h.by_key["000004_01"], 2);
  EXPECT_EQ(h.signal[l0], "SIGBUS");

  // Lines of a journal written before runs were named count one each.
  const std::string old = R"({"key":"000002_00","source_index":2,"stage":"source","operator":"","signal":"SIGSEGV"})";
  test::write_text_file(journal, old + "\n" + old + "\n");
  EXPECT_EQ(read_crash_history(journal).by_source[decoding], 2);
}

}  // namespace
}  // namespace opforge::datagen
