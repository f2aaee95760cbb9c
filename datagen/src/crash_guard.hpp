#pragma once
// Crash attribution for datagen. While a shard runs, fatal signals (SIGSEGV,
// SIGBUS, SIGFPE, SIGILL, SIGABRT) write one line naming the pair the
// faulting thread was working on to the shard's crash journal, then let the
// process die as it would have. --resume reads those lines: an operator that
// crashed the process twice on a source is not run on it again (the pairs
// become recorded failures), so one bad input cannot block a dataset forever.
//
// A death without a signal handler's chance (SIGKILL: a user, a scheduler's
// preemption, the OOM killer) attributes nothing: those pairs are retried.

#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace opforge::datagen {

/// Opens one run's crash journal and, while any guard lives, keeps the
/// handlers installed (the first guard installs them, the last restores the
/// previous ones; a crash still reaches those). Runs in the same process each
/// have their own guard: a thread's crash line goes to the journal of the run
/// it works for.
class CrashGuard {
 public:
  explicit CrashGuard(const std::filesystem::path& journal);
  ~CrashGuard();
  CrashGuard(const CrashGuard&) = delete;
  CrashGuard& operator=(const CrashGuard&) = delete;

 private:
  friend void crash_context(const CrashGuard&, const std::string&, std::size_t, const std::string&, const std::string&);
  int fd_ = -1;
  std::string run_;  ///< this run's id in its crash lines: process id and start time
};

/// What the calling thread is doing for `guard`'s run, for the crash line:
/// set before each stage of a pair, cleared when the pair is done. Cheap (no
/// allocation after the first call on a thread, no system call).
void crash_context(const CrashGuard& guard, const std::string& key, std::size_t source_index, const std::string& stage,
                   const std::string& op);
void clear_crash_context();

/// The crash journal read back: crashes (process deaths, however many
/// threads wrote a line) per pair key and per (source, what), where `what`
/// is an operator's name or "" for a crash while decoding.
struct CrashHistory {
  std::map<std::string, int> by_key;
  std::map<std::pair<std::size_t, std::string>, int> by_source;
  std::map<std::pair<std::size_t, std::string>, std::set<std::string>> keys;  ///< the pairs behind by_source
  std::map<std::pair<std::size_t, std::string>, std::string> signal;         ///< the last signal seen
};
CrashHistory read_crash_history(const std::filesystem::path& journal);

}  // namespace opforge::datagen
