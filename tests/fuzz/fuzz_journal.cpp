// Datagen journal lines, as --resume and merge read them: any bytes. An
// accepted row names files inside the dataset's input/ and output/ trees,
// under its own key and source bucket.

#include <string>

#include "dataset_dir.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace opforge;
  return fuzz::run(data, size, [](std::span<const std::uint8_t> bytes) {
    const std::string line(bytes.begin(), bytes.end());
    (void)datagen::parse_failure_row(line);
    const auto row = datagen::parse_journal_row(line);
    if (!row) return;
    for (const std::string* file : {&row->input_file, &row->output_file}) {
      fuzz::require(file->find("..") == std::string::npos && file->find('\0') == std::string::npos, "no path escape");
      std::string expected = "/";  // built up: GCC 12 warns falsely (-Wrestrict) on "/" + string
      expected += datagen::bucket_of(row->source_index) + "/" + row->key + ".";
      fuzz::require(file->find(expected) != std::string::npos, "file under its key and bucket");
    }
    fuzz::require(row->input_file.rfind("input/", 0) == 0 && row->output_file.rfind("output/", 0) == 0, "trees");
  });
}
