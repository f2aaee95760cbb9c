#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "commands.hpp"
#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/params.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"

namespace opforge::cli {
namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

constexpr const char* kInferHelp =
    "\nIN and OUT are image files, or directories: every .png/.jpg/.jpeg/.npy in IN (not recursive) is run\n"
    "and written to OUT/<name>.<--format>. OUT's format: .png (8-bit, --depth 16 for 16-bit) and .jpg\n"
    "are quantised as the model says (the published CAN models truncate); .npy holds the raw float32\n"
    "RGB output, unclipped. Channel order is the model's business: IN and OUT are RGB files as always.\n"
    "\n"
    "--device vulkan runs the network on a Vulkan device (`opforge infer --list-devices`; the first\n"
    "listed unless --device-index); auto takes a Vulkan GPU when there is one, else the CPU. An image\n"
    "whose activations exceed the device's memory budget (or --device-memory MIB) runs in parts, with\n"
    "the same result; an image is written whole or not at all.\n"
    "\n"
    "Exit status: 0 every image written; 2 bad usage, a bad model or input (one line each; with a\n"
    "directory the others are still run); 1 internal error.\n";

std::map<std::string, double> parse_param_values(const std::vector<std::string>& items) {
  std::map<std::string, double> values;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    double v = 0;
    if (eq == std::string::npos || eq == 0 || !parse_number(item.substr(eq + 1), v)) {
      throw UsageError("--param '" + item + "' is invalid; valid: NAME=NUMBER");
    }
    values[item.substr(0, eq)] = v;
  }
  return values;
}

std::vector<float> parse_planes(const std::string& text) {
  std::vector<float> planes;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string item = text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    double value = 0;
    if (!parse_number(item, value) || std::abs(value) > 1e30) {
      throw UsageError("--planes '" + text + "': '" + item + "' is not a number; valid: V,V,... (one per plane)");
    }
    planes.push_back(static_cast<float>(value));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return planes;
}

bool is_input_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".npy";
}

struct Job {
  fs::path in, out;
};

// The files of a directory run, checked before any work starts.
std::vector<Job> directory_jobs(const fs::path& in, const fs::path& out, const std::string& format) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
    throw Error("IN '" + in.string() + "' is a directory, so OUT '" + out.string() + "' must be one too");
  }
  if (fs::exists(out, ec) && fs::equivalent(in, out, ec)) {
    throw Error("OUT '" + out.string() + "' is IN itself; give another directory");
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(in)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_regular_file() || !is_input_image(entry.path())) continue;
    files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error("no images in '" + in.string() + "' (valid: .png, .jpg, .jpeg, .npy)");
  std::vector<Job> jobs;
  std::map<fs::path, fs::path> claimed;
  for (const auto& f : files) {
    const fs::path target = out / (f.stem().string() + "." + format);
    const auto [it, fresh] = claimed.emplace(target, f);
    if (!fresh) {
      throw Error("'" + it->second.filename().string() + "' and '" + f.filename().string() + "' would both write '" +
                  target.string() + "'");
    }
    jobs.push_back({f, target});
  }
  return jobs;
}

// A progress bar on a terminal, as datagen's: "[####......] 12/40 images,
// 1 failed, 0.85 images/s, ETA 0:33 name", rewritten in place; nothing when
// stderr is not a terminal.
class Progress {
 public:
  Progress(std::size_t total, bool enabled)
      : total_(total), enabled_(enabled && ::isatty(STDERR_FILENO) == 1), start_(std::chrono::steady_clock::now()) {}
  void show(std::size_t done, std::size_t failed, const fs::path& current) const {
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    std::fprintf(stderr, "\r\033[K%s %zu/%zu images, %zu failed, %.2f images/s, ETA %s %s",
                 progress_bar(double(done), double(total_)).c_str(), done, total_, failed, rate,
                 time_left(double(done), double(total_), rate).c_str(), current.filename().string().c_str());
    std::fflush(stderr);
  }
  void clear() const {
    if (enabled_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  std::size_t total_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

// `opforge infer --list-devices`: one line per Vulkan device, in the order
// --device-index counts them.
int list_devices() {
  const auto devices = vk::list_devices();
  for (const auto& d : devices) {
    std::printf("%d: %s (%s, Vulkan %s, %.1f GiB%s, subgroup %d%s)\n", d.index, d.name.c_str(), vk::to_string(d.kind),
                d.vulkan_version.c_str(), d.memory_bytes / (1 << 30), d.memory_budget ? ", memory budget" : "", d.subgroup_size,
                d.fp16_storage ? ", fp16 storage" : "");
  }
  return 0;
}

// The executor --device names; `auto` falls back to the CPU only when no
// Vulkan device can be opened at all.
std::unique_ptr<model::Executor> make_executor(const po::variables_map& vm) {
  const std::string device = vm["device"].as<std::string>();
  if (device != "cpu" && device != "vulkan" && device != "auto") {
    throw UsageError("--device '" + device + "' is invalid; valid: cpu, vulkan, auto");
  }
  if ((vm.count("device-index") || vm.count("device-memory") || vm["fp16"].as<bool>()) && device == "cpu") {
    throw UsageError("--device-index, --device-memory and --fp16 need --device vulkan or auto");
  }
  if (device == "cpu") return std::make_unique<model::CpuExecutor>();
  vk::VulkanOptions options;
  // For tests and driver debugging: the Khronos validation layer, its
  // messages printed at the end.
  if (const char* v = std::getenv("OPFORGE_VULKAN_VALIDATION"); v != nullptr && std::string(v) == "1") options.validation = true;
  if (vm.count("device-index")) options.device_index = vm["device-index"].as<int>();
  options.fp16_storage = vm["fp16"].as<bool>();
  if (vm.count("device-memory")) {
    const double mib = vm["device-memory"].as<double>();
    if (!(mib >= 1 && mib <= 1e9)) throw UsageError("--device-memory " + std::to_string(mib) + " is invalid; valid: 1..1e9 MiB");
    options.budget_bytes = mib * (1 << 20);
  }
  if (device == "vulkan" || vm.count("device-index")) return std::make_unique<vk::VulkanExecutor>(options);
  // auto: a GPU when there is one. A CPU-type Vulkan device (lavapipe) is
  // far slower than the CPU executor, so it is not chosen here.
  try {
    const auto devices = vk::list_devices();
    if (devices.front().kind == vk::DeviceKind::cpu) {
      std::cerr << "opforge infer: --device auto: running on the CPU (the only Vulkan device, " << devices.front().name
                << ", is a CPU device; --device vulkan runs on it)\n";
      return std::make_unique<model::CpuExecutor>();
    }
    return std::make_unique<vk::VulkanExecutor>(options);
  } catch (const Error& e) {
    std::cerr << "opforge infer: --device auto: running on the CPU (" << e.what() << ")\n";
    return std::make_unique<model::CpuExecutor>();
  }
}

}  // namespace

int infer_command(const Args& args) {
  po::options_description opts("opforge infer MODEL IN OUT [options]");
  opts.add_options()("help,h", "this help")(
      "planes", po::value<std::string>(), "V,V,...: the model's constant input planes, in order (`opforge model info`)")(
      "operator", po::value<std::string>(), "NAME: a combined model's one-hot operator planes, by name")(
      "param", po::value<std::vector<std::string>>(),
      "NAME=V: the operator parameter a parameterized model's plane carries (repeatable; `opforge model info`)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu, vulkan, or auto (a Vulkan GPU when there is one, else the CPU)")(
      "device-index", po::value<int>(), "N: the Vulkan device, as --list-devices numbers them")(
      "device-memory", po::value<double>(), "MIB: device memory to use at most (default: the driver's budget)")(
      "list-devices", po::bool_switch(), "list the Vulkan devices and exit")(
      "fp16", po::bool_switch(), "Vulkan: store activations as float16 (half the memory; within 1 level of float32)")(
      "depth", po::value<int>()->default_value(8), "PNG output bits per channel: 8 or 16")(
      "format", po::value<std::string>()->default_value("png"), "output format for a directory: png, jpg or npy")(
      "quiet,q", po::bool_switch(), "no progress display");
  add_threads_option(opts);
  add_max_pixels_option(opts);
  po::variables_map vm;
  if (std::find(args.begin(), args.end(), std::string("--list-devices")) != args.end()) {
    parse_command_line(args, opts, {}, vm);
    return list_devices();
  }
  const auto positional = parse_command_line(args, opts, {"MODEL", "IN", "OUT"}, vm);
  if (vm.count("help")) {
    std::cout << opts << kInferHelp;
    return 0;
  }
  const int depth = vm["depth"].as<int>();
  if (depth != 8 && depth != 16) throw UsageError("--depth " + std::to_string(depth) + " is invalid; valid: 8 or 16");
  const std::string format = vm["format"].as<std::string>();
  if (format != "png" && format != "jpg" && format != "npy") {
    throw UsageError("--format '" + format + "' is invalid; valid: png, jpg, npy");
  }
  if (vm.count("planes") + vm.count("operator") + vm.count("param") > 1) {
    throw UsageError("give one of --planes, --operator and --param");
  }
  const DecodeLimits limits = decode_limits_option(vm);

  // Everything cheap is checked before the first image is read.
  const model::Model model = model::Model::load(positional[0]);
  std::vector<float> planes;
  if (vm.count("planes")) planes = parse_planes(vm["planes"].as<std::string>());
  if (vm.count("operator")) planes = model.operator_planes(vm["operator"].as<std::string>());
  if (vm.count("param")) planes = model.planes_for("", parse_param_values(vm["param"].as<std::vector<std::string>>()));
  model.check_planes(planes);
  const fs::path in = positional[1], out = positional[2];
  std::error_code ec;
  const bool directory = fs::is_directory(in, ec);
  std::vector<Job> jobs;
  if (directory) {
    jobs = directory_jobs(in, out, format);
  } else {
    require_writable_extension(out);
    jobs.push_back({in, out});
  }
  const std::unique_ptr<model::Executor> executor = make_executor(vm);
  const auto run_one = [&](const Job& job) {
    const Image image = read_image(job.in, limits);
    const Image raw = executor->run(model, image, planes);
    if (job.out.extension() == ".npy") {
      write_image(job.out, raw);
    } else {
      write_image(job.out, model::quantise(model, raw, depth), {.png_depth = depth});
    }
  };
  // Validation messages (OPFORGE_VULKAN_VALIDATION=1), one line each, on the way out.
  struct ReportValidation {
    const model::Executor& executor;
    ~ReportValidation() {
      if (const auto* v = dynamic_cast<const vk::VulkanExecutor*>(&executor)) {
        for (const auto& m : v->validation_messages()) std::cerr << "opforge infer: Vulkan validation " << m << "\n";
      }
    }
  } report_validation{*executor};
  if (!directory) {
    run_one(jobs[0]);
    return 0;
  }
  fs::create_directories(out);
  const Progress progress(jobs.size(), !vm["quiet"].as<bool>());
  const auto start = std::chrono::steady_clock::now();
  std::size_t failed = 0;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    progress.show(i, failed, jobs[i].in);
    try {
      run_one(jobs[i]);
    } catch (const Error& e) {
      ++failed;
      progress.clear();
      const std::string message = e.what();
      const std::string name = jobs[i].in.string();
      std::cerr << "opforge infer: " << (message.find(name) == std::string::npos ? name + ": " : "") << message << "\n";
    } catch (const std::bad_alloc&) {
      ++failed;
      progress.clear();
      std::cerr << "opforge infer: " << jobs[i].in.string() << ": out of memory\n";
    }
  }
  progress.clear();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("infer %s: %zu image(s), %zu written, %zu failed, %.1f s (%s)\n", out.string().c_str(), jobs.size(),
              jobs.size() - failed, failed, seconds, executor->name().c_str());
  return failed == 0 ? 0 : 2;
}

}  // namespace opforge::cli
