#include "crash_guard.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "dataset_dir.hpp"

namespace opforge::datagen {
namespace {

constexpr std::array<int, 5> kSignals = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// Handlers are per process: the first guard installs them, the last one
// restores the previous handlers.
std::mutex install_mutex;
int active_guards = 0;
struct sigaction previous[5];

// The calling thread's crash line up to the signal name, formatted ahead of
// time because a signal handler may not allocate or format.
thread_local std::array<char, 512> line_prefix{};
thread_local volatile std::sig_atomic_t line_length = 0;
thread_local volatile std::sig_atomic_t line_fd = -1;  // the journal of the run this thread works for

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
  }
  return "signal";
}

void write_all(int fd, const char* text, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Async-signal-safe: write(2), sigaction(2) and raise(3) only.
void on_fatal_signal(int sig) {
  const int fd = line_fd;
  if (fd >= 0 && line_length > 0) {
    char line[600];
    auto n = static_cast<std::size_t>(line_length);
    std::memcpy(line, line_prefix.data(), n);
    const char* name = signal_name(sig);
    const char* tail = "\"}\n";
    for (const char* p = name; *p && n < sizeof line - 4; ++p) line[n++] = *p;
    for (const char* p = tail; *p; ++p) line[n++] = *p;
    write_all(fd, line, n);  // one write: a line, whole or not at all in practice
  }
  for (std::size_t i = 0; i < kSignals.size(); ++i) {
    if (kSignals[i] == sig) ::sigaction(sig, &previous[i], nullptr);
  }
  std::raise(sig);  // delivered on return, to the previous handler (or the default: death)
}

}  // namespace

CrashGuard::CrashGuard(const std::filesystem::path& journal)
    : run_(std::to_string(::getpid()) + "-" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())) {
  fd_ = ::open(journal.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw WriteError("cannot create '" + journal.string() + "': " + std::strerror(errno), errno);
  std::lock_guard lock(install_mutex);
  if (active_guards++ > 0) return;
  struct sigaction action {};
  action.sa_handler = on_fatal_signal;
  sigemptyset(&action.sa_mask);
  for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &action, &previous[i]);
}

CrashGuard::~CrashGuard() {
  {
    std::lock_guard lock(install_mutex);
    if (--active_guards == 0) {
      for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &previous[i], nullptr);
    }
  }
  ::close(fd_);
}

void crash_context(const CrashGuard& guard, const std::string& key, std::size_t source_index, const std::string& stage,
                   const std::string& op) {
  const std::string prefix =
      nlohmann::json{{"key", key}, {"source_index", source_index}, {"stage", stage}, {"operator", op}, {"run", guard.run_}}
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // {"key":…,"stage":…} → {"key":…,"stage":…,"signal":"   (the handler ends it)
  std::string head = prefix.substr(0, prefix.size() - 1) + ",\"signal\":\"";
  const std::size_t n = std::min(head.size(), line_prefix.size());
  // Never half-updated while this thread's handler could read it.
  line_length = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::memcpy(line_prefix.data(), head.data(), n);
  line_fd = guard.fd_;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  line_length = static_cast<std::sig_atomic_t>(n);
}

void clear_crash_context() { line_length = 0; }

CrashHistory read_crash_history(const std::filesystem::path& journal) {
  CrashHistory history;
  std::error_code ec;
  if (!std::filesystem::exists(journal, ec)) return history;
  // The runs that died on each pair and on each (source, what).
  std::map<std::string, std::set<std::string>> key_runs;
  std::map<std::pair<std::size_t, std::string>, std::set<std::string>> source_runs;
  for_each_line(journal, [&](const std::string& line, std::uint64_t offset) {
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      const std::string key = j.at("key").get<std::string>();
      const std::size_t source = j.at("source_index").get<std::size_t>();
      const std::string what = j.at("stage").get<std::string>() == "source" ? "" : j.at("operator").get<std::string>();
      // A line without a run (an older journal) is a run of its own.
      const std::string run = j.contains("run") ? j.at("run").get<std::string>() : "@" + std::to_string(offset);
      key_runs[key].insert(run);
      source_runs[{source, what}].insert(run);
      history.keys[{source, what}].insert(key);
      history.signal[{source, what}] = j.value("signal", "a signal");
    } catch (const nlohmann::json::exception&) {
      // a line torn by the death itself: nothing to count
    }
  });
  for (const auto& [key, runs] : key_runs) history.by_key[key] = static_cast<int>(runs.size());
  for (const auto& [where, runs] : source_runs) history.by_source[where] = static_cast<int>(runs.size());
  return history;
}

}  // namespace opforge::datagen
