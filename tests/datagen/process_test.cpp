// `opforge datagen` as a process: killed with SIGKILL at random points and
// resumed, stopped by a full disk (RLIMIT_FSIZE) and resumed, the summary
// line, --strict and one-line errors.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <random>
#include <thread>

#include "datagen_fixtures.hpp"
#include "opforge/core/io.hpp"

namespace opforge {
namespace {
namespace fs = std::filesystem;

struct Child {
  pid_t pid = -1;
};

// Starts the CLI with stdout/stderr to files in `dir`; `file_size_limit` > 0
// sets RLIMIT_FSIZE (writes past it fail with EFBIG, as on a full disk).
Child start_program(const std::string& program, const std::vector<std::string>& args, const fs::path& dir,
                    rlim_t file_size_limit = 0) {
  const std::string out = (dir / "stdout.txt").string(), err = (dir / "stderr.txt").string();
  const pid_t pid = fork();
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (file_size_limit > 0) {
      // Past the limit the kernel sends SIGXFSZ; opforge must turn that into
      // EFBIG, one line and exit 2 (the test leaves the signal as it is).
      const rlimit limit{file_size_limit, file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    // A sanitizer build's SIGSEGV report would turn the injected crash into
    // exit status 1; the crash test needs the signal itself.
    if (program == OPFORGE_CRASH_HELPER) ::setenv("ASAN_OPTIONS", "handle_segv=0:handle_abort=0", 1);
    std::vector<char*> argv;
    std::string exe = program;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  return {pid};
}

Child start(const std::vector<std::string>& args, const fs::path& dir, rlim_t file_size_limit = 0) {
  return start_program(OPFORGE_CLI, args, dir, file_size_limit);
}

int wait_for(const Child& c) {
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string text_of(const fs::path& p) {
  const auto bytes = read_file(p, true);
  return std::string(bytes.begin(), bytes.end());
}

std::string kill_recipe() {
  // ~100 pairs of cheap-to-moderate operators: long enough to be killed mid-run.
  return "name: killme\nseed: 99\nsources: sources\npreprocess:\n  crop: 64\npairs_per_source: 16\n"
         "operators:\n"
         "  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n"
         "  - name: rolling_guidance\n    params:\n      sigma_s: {uniform: [1, 5]}\n"
         "  - name: gaussian_noise\n    params:\n      sigma: {uniform: [10, 70]}\n"
         "output:\n  format: png8\n  webdataset:\n    shard_pairs: 10\n";
}

TEST(DatagenProcess, KilledAtRandomPointsThenResumedEqualsUninterrupted) {
  const fs::path dir = test::scratch_dir("datagen-sigkill");
  test::write_sources(dir, 6, 96);
  test::write_text_file(dir / "recipe.yaml", kill_recipe());
  const std::string recipe = (dir / "recipe.yaml").string();

  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "reference").string(), "-q"}, dir)), 0)
      << text_of(dir / "stderr.txt");

  // Each round resumes and is killed once a random number of further pairs
  // are in the journal, plus a random delay: kills land in the operator, in
  // file writes, in journal appends and in between.
  std::mt19937 random(12345);
  const std::string out = (dir / "killed").string();
  const fs::path journal = fs::path(out) / ".opforge" / "shard-0-of-1.rows.jsonl";
  const auto journal_rows = [&] {
    std::error_code ec;
    if (!fs::exists(journal, ec)) return 0L;
    const std::string text = text_of(journal);
    return static_cast<long>(std::count(text.begin(), text.end(), '\n'));
  };
  int killed = 0;
  for (int round = 0; round < 6; ++round) {
    std::vector<std::string> args = {"datagen", recipe, "--out", out, "-q"};
    if (round > 0) args.push_back("--resume");
    const long target = journal_rows() + std::uniform_int_distribution<long>(1, 10)(random);
    const Child c = start(args, dir);
    int status = 0;
    bool exited = false;
    while (!exited && journal_rows() < target) {
      exited = ::waitpid(c.pid, &status, WNOHANG) == c.pid;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(random)));
      ::kill(c.pid, SIGKILL);
      // The run may have finished during the delay: then the kill found it
      // gone, it exited 0, and its metadata.jsonl is the complete dataset's.
      const int code = wait_for(c);
      killed += code == -SIGKILL;
      exited = code != -SIGKILL;
    }
    EXPECT_FALSE(fs::exists(fs::path(out) / "metadata.jsonl") && !exited) << "a killed run left metadata.jsonl";
  }
  EXPECT_GE(killed, 5);
  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", out, "--resume", "-q"}, dir)), 0) << text_of(dir / "stderr.txt");
  EXPECT_EQ(test::tree_difference(test::dataset_tree(dir / "reference"), test::dataset_tree(out)), "");
}

TEST(DatagenProcess, DiskFullStopsCleanlyAndResumeCompletes) {
  const fs::path dir = test::scratch_dir("datagen-diskfull");
  // Four small sources and one large one: its npy files exceed the limit.
  test::write_sources(dir, 4, 40);
  write_image(dir / "sources" / "img2.png", test::synthetic_image(200, 200, 3));
  test::write_text_file(dir / "recipe.yaml",
                        "name: full\nseed: 3\nsources: sources\npairs_per_source: 3\n"
                        "operators:\n  - name: gaussian_noise\n    params:\n      sigma: {uniform: [5, 50]}\n"
                        "output:\n  format: npy\n");
  const std::string recipe = (dir / "recipe.yaml").string();
  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "reference").string(), "-q"}, dir)), 0);

  const std::string out = (dir / "full").string();
  const int status = wait_for(start({"datagen", recipe, "--out", out, "-q", "--threads", "1"}, dir, 200 * 1024));
  const std::string err = text_of(dir / "stderr.txt");
  EXPECT_EQ(status, 2) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(fs::path(out) / "metadata.jsonl"));
  // Nothing under a final name is partial: every visible file decodes completely.
  int visible = 0;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name[0] == '.' || e.path().string().find("/.opforge/") != std::string::npos) continue;
    EXPECT_NO_THROW(read_image(e.path())) << e.path();
    ++visible;
  }
  EXPECT_GE(visible, 2);  // the pairs before the large source were kept

  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", out, "--resume", "-q"}, dir)), 0) << text_of(dir / "stderr.txt");
  EXPECT_EQ(test::tree_difference(test::dataset_tree(dir / "reference"), test::dataset_tree(out)), "");
}

TEST(DatagenProcess, ASourceThatCrashesTheOperatorIsRecordedAfterTwoResumes) {
  const fs::path dir = test::scratch_dir("datagen-crash");
  test::write_sources(dir, 4, 64);
  test::write_text_file(dir / "recipe.yaml",
                        "name: crash\nseed: 5\nsources: sources\npreprocess:\n  crop: 48\npairs_per_source: 3\n"
                        "operators:\n  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n"
                        "output:\n  format: png8\n  webdataset:\n    shard_pairs: 4\n");
  const std::string recipe = (dir / "recipe.yaml").string();
  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "reference").string(), "-q"}, dir)), 0)
      << text_of(dir / "stderr.txt");
  // A fifth source, sorted last, on which the operator dies by SIGSEGV.
  write_image(dir / "sources" / "zz_crash.png", test::synthetic_image(70, 80, 3));
  const std::string out = (dir / "crashed").string();
  const auto helper = [&](bool resume) {
    std::vector<std::string> args = {recipe, out, "zz_crash"};
    if (resume) args.push_back("--resume");
    return wait_for(start_program(OPFORGE_CRASH_HELPER, args, dir));
  };
  EXPECT_EQ(helper(false), -SIGSEGV) << text_of(dir / "stderr.txt");
  EXPECT_EQ(helper(true), -SIGSEGV) << "first resume: " << text_of(dir / "stderr.txt");
  ASSERT_EQ(helper(true), 0) << "second resume: " << text_of(dir / "stderr.txt");
  EXPECT_NE(text_of(dir / "stdout.txt").find("failed 3 crashed 3"), std::string::npos) << text_of(dir / "stdout.txt");

  // All three of its pairs are recorded, with the reason.
  const std::string failures = text_of(fs::path(out) / "failures.jsonl");
  EXPECT_EQ(std::count(failures.begin(), failures.end(), '\n'), 3) << failures;
  EXPECT_NE(failures.find("\"stage\":\"crash\""), std::string::npos) << failures;
  EXPECT_NE(failures.find("l0_smooth crashed the process twice on this source (SIGSEGV"), std::string::npos) << failures;
  EXPECT_NE(failures.find("sources/zz_crash.png"), std::string::npos) << failures;
  // Everything else is byte-identical to a run that never saw that source.
  auto reference = test::dataset_tree(dir / "reference"), crashed = test::dataset_tree(out);
  for (const char* summary : {"failures.jsonl", "dataset.json", "README.md"}) {  // the counts differ
    reference.erase(summary);
    crashed.erase(summary);
  }
  EXPECT_EQ(test::tree_difference(reference, crashed), "");
  EXPECT_GE(reference.size(), 12u * 2);
}

TEST(DatagenProcess, ARunWhereEveryPairFailedExitsTwo) {
  const fs::path dir = test::scratch_dir("datagen-all-failed");
  fs::create_directories(dir / "sources");
  test::write_text_file(dir / "sources" / "a.png", "not a png");
  test::write_text_file(dir / "sources" / "b.jpg", "not a jpeg");
  test::write_text_file(dir / "recipe.yaml", "name: none\nseed: 1\nsources: sources\noperators:\n  - name: jpeg\n");
  const int status = wait_for(start({"datagen", (dir / "recipe.yaml").string(), "--out", (dir / "out").string(), "-q"}, dir));
  const std::string err = text_of(dir / "stderr.txt");
  EXPECT_EQ(status, 2) << err;
  EXPECT_NE(err.find("every pair failed (2)"), std::string::npos) << err;
  EXPECT_NE(text_of(dir / "out" / "failures.jsonl").find("a.png"), std::string::npos);
}

TEST(DatagenProcess, SummaryStrictAndOneLineErrors) {
  const fs::path dir = test::scratch_dir("datagen-cli");
  test::write_sources(dir, 2);
  test::write_text_file(dir / "sources" / "broken.png", "not a png");
  test::write_text_file(dir / "recipe.yaml", test::mixture_recipe(2));
  const std::string recipe = (dir / "recipe.yaml").string();

  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "a").string(), "-q"}, dir)), 0);
  const std::string summary = text_of(dir / "stdout.txt");
  EXPECT_NE(summary.find("mix: 4 pairs written, 0 already complete, 2 failed in"), std::string::npos) << summary;
  EXPECT_NE(summary.find("pairs/s"), std::string::npos) << summary;
  EXPECT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "b").string(), "-q", "--strict"}, dir)), 2);

  const auto expect_one_line = [&](const std::vector<std::string>& args, const std::string& fragment) {
    const int status = wait_for(start(args, dir));
    const std::string err = text_of(dir / "stderr.txt");
    EXPECT_EQ(status, 2) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << err;
  };
  test::write_text_file(dir / "typo.yaml", "name: x\nseed: 1\nsources: sources\noperators:\n  - name: l0_smooth\n"
                                            "    params:\n      lamda: 0.1\n");
  expect_one_line({"datagen", (dir / "typo.yaml").string(), "--out", (dir / "c").string()}, "typo.yaml:7:");
  expect_one_line({"datagen", (dir / "missing.yaml").string(), "--out", (dir / "c").string()}, "missing.yaml");
  expect_one_line({"datagen", recipe, "--out", (dir / "c").string(), "--shard", "3/3"}, "0 <= I < N");
  expect_one_line({"datagen", recipe, "--out", (dir / "c").string(), "--shards", "4"}, "SLURM_ARRAY_TASK_ID");
  expect_one_line({"datagen", recipe, "--out", (dir / "a").string()}, "--resume");
  expect_one_line({"datagen", "merge", (dir / "nothing").string()}, "no opforge datagen run");
  expect_one_line({"datagen", "preview", recipe, "--out", (dir / "sheet.png").string(), "--pairs", "0"}, "1..200");
  expect_one_line({"datagen", "preview", recipe, "--out", (dir / "sheet.tif").string()}, ".png");
  ASSERT_EQ(wait_for(start({"datagen", "preview", recipe, "--out", (dir / "sheet.png").string(), "--pairs", "3"}, dir)), 0)
      << text_of(dir / "stderr.txt");
  EXPECT_GT(read_image(dir / "sheet.png").rows, 3 * 100);
  // --sources replaces the recipe's sources (relative to the working directory).
  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "other").string(), "-q", "--sources",
                            (dir / "sources" / "img1.png").string()}, dir)), 0);  // one image is a source set
  const std::string one_image = text_of(dir / "other" / "metadata.jsonl");
  EXPECT_EQ(std::count(one_image.begin(), one_image.end(), '\n'), 2);
  ASSERT_EQ(wait_for(start({"datagen", recipe, "--out", (dir / "other2").string(), "-q", "--sources",
                            (dir / "sources" / "img*.png").string()}, dir)), 0) << text_of(dir / "stderr.txt");
  EXPECT_NE(text_of(dir / "other2" / "metadata.jsonl").find("img1.png"), std::string::npos);
  EXPECT_EQ(text_of(dir / "other2" / "metadata.jsonl").find("broken.png"), std::string::npos);
  // A binary file given as a list of sources is refused in one line, not misread.
  test::write_text_file(dir / "binary.lst", std::string("a\0b\n", 4));
  expect_one_line({"datagen", recipe, "--out", (dir / "other3").string(), "--sources", (dir / "binary.lst").string()},
                  "is not text");
  // A second process on a shard that is running is refused, not interleaved.
  {
    const int lock = ::open((dir / "a" / ".opforge" / "shard-0-of-1.lock").c_str(), O_RDWR);
    ASSERT_GE(lock, 0);
    ASSERT_EQ(::flock(lock, LOCK_EX | LOCK_NB), 0);
    expect_one_line({"datagen", recipe, "--out", (dir / "a").string(), "--resume"}, "another process");
    ::close(lock);
  }
  EXPECT_FALSE(fs::exists(dir / "c" / "metadata.jsonl"));
}

}  // namespace
}  // namespace opforge
