// datagen throughput: pairs/s of a whole `opforge datagen` run on 1 and 2
// threads, against a plain serial loop doing the same per-pair work (decode,
// plan, crop, operator, PNG encode, sha256, atomic writes) and against the
// operator alone, all in one run. The pipeline's own overhead is
// datagen(1 thread) − plain loop; the goals are 2 threads ≥ 1.8× one and that
// overhead ≤ 5 % of the operator time.
//
// The four measurements are interleaved, round after round, and each keeps
// its minimum: on a shared VM a slow spell then hits every measurement alike
// instead of whichever one happened to run during it.

#include <tbb/global_control.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "bench_support.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/sha256.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/plan.hpp"

namespace {

using namespace opforge;
using namespace opforge::datagen;
namespace fs = std::filesystem;

const fs::path& work_dir() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / "opforge-datagen-bench";
    fs::remove_all(d);
    fs::create_directories(d);
    // 3 sources (the 1 MP sample and the two 256² conformance inputs), 8 pairs
    // each, 256x256 crops, l0_smooth with Fan et al.'s λ range.
    const std::string data = OPFORGE_BENCH_DATA_DIR;
    std::ofstream(d / "recipe.yaml") << "name: bench\nseed: 1\nsources:\n"
                                     << "  - directory: " << data << "/conformance/inputs\n"
                                     << "  - glob: " << data << "/samples/*.jpg\n"
                                     << "preprocess:\n  crop: 256\npairs_per_source: 8\noperators:\n"
                                     << "  - name: l0_smooth\n    params:\n      lambda: {log_uniform: [0.002, 0.2]}\n";
    return d;
  }();
  return dir;
}

const Recipe& recipe() {
  static const Recipe r = load_recipe(work_dir() / "recipe.yaml");
  return r;
}

const std::vector<SourceImage>& sources() {
  static const std::vector<SourceImage> s = list_sources(recipe().sources, recipe().base_dir);
  return s;
}

double best[4] = {0, 0, 0, 0};  // datagen 1 thread, 2 threads, plain loop, operator: minimum seconds

std::size_t pair_count() { return sources().size() * static_cast<std::size_t>(recipe().pairs_per_source); }

void run_datagen(int threads) {
  const fs::path out = work_dir() / "out";
  generate(recipe(), {.out_dir = out, .shard = {}, .threads = threads});
}

// The same work, serially, without the pipeline, journal or finalize.
void run_plain_loop() {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
  const fs::path out = work_dir() / "plain";
  fs::create_directories(out);
  for (std::size_t s = 0; s < sources().size(); ++s) {
    const auto bytes = read_file(sources()[s].path);
    benchmark::DoNotOptimize(sha256_hex(bytes));
    const Image source = preprocess_source(recipe(), decode_image(bytes, "source"));
    for (int p = 0; p < recipe().pairs_per_source; ++p) {
      const PairImages pair = make_pair(recipe(), sources()[s], s, sources().size(), p, source);
      for (const Image* img : {&pair.input, &pair.output}) {
        const auto png = encode_png(*img, 8);
        benchmark::DoNotOptimize(sha256_hex(png));
        write_file_atomic(out / (pair.plan.key + (img == &pair.input ? "_in.png" : "_out.png")), png);
      }
    }
  }
}

// The operator alone on the same crops and parameters.
const std::vector<std::pair<Image, PairPlan>>& operator_work() {
  static const auto work = [] {
    std::vector<std::pair<Image, PairPlan>> w;
    for (std::size_t s = 0; s < sources().size(); ++s) {
      const Image source = read_image(sources()[s].path);
      for (int p = 0; p < recipe().pairs_per_source; ++p) {
        PairPlan plan = plan_pair(recipe(), sources()[s], s, sources().size(), p);
        const auto crop = crop_window(recipe(), plan.seed, source.rows, source.cols);
        w.emplace_back(source(cv::Rect(crop->x, crop->y, crop->width, crop->height)).clone(), std::move(plan));
      }
    }
    return w;
  }();
  return work;
}

void run_operator_only() {
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
  for (const auto& [image, plan] : operator_work()) {
    benchmark::DoNotOptimize(plan.op->entry->apply(image, plan.values, {.seed = plan.seed}).data);
  }
}

void BM_interleaved(benchmark::State& state) {
  for (auto _ : state) {
    for (int round = 0; round < 7; ++round) {
      for (int which = 0; which < 4; ++which) {
        fs::remove_all(work_dir() / "out");  // outside the timed part
        fs::remove_all(work_dir() / "plain");
        const auto start = std::chrono::steady_clock::now();
        switch (which) {
          case 0: run_datagen(1); break;
          case 1: run_datagen(2); break;
          case 2: run_plain_loop(); break;
          case 3: run_operator_only(); break;
        }
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best[which] = round == 0 ? t : std::min(best[which], t);
      }
    }
  }
}

BENCHMARK(BM_interleaved)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  reuse_large_allocations();
  std::printf("datagen: %zu pairs of 256x256 crops, l0_smooth, png8\n", pair_count());
  benchmark::RunSpecifiedBenchmarks();
  const double one = best[0], two = best[1], plain = best[2], op = best[3];
  std::printf("\nsame run, minimum of 7 interleaved rounds:\n");
  std::printf("datagen 1 thread %.3f s, 2 threads %.3f s, plain loop %.3f s, operator alone %.3f s\n", one, two, plain, op);
  std::printf("pairs/s: %.2f on 1 thread, %.2f on 2 threads: speed-up %.2fx (goal >= 1.8x)\n", static_cast<double>(pair_count()) / one,
              static_cast<double>(pair_count()) / two, one / two);
  std::printf("pipeline overhead, datagen(1 thread) - plain loop: %.1f ms = %.1f %% of the operator time (goal <= 5 %%)\n",
              1e3 * (one - plain), 100 * (one - plain) / op);
  std::printf("decode + encode + hash + write (plain loop - operator): %.1f ms = %.1f %% of the operator time\n",
              1e3 * (plain - op), 100 * (plain - op) / op);
  fs::remove_all(work_dir());
  benchmark::Shutdown();
  return 0;
}
