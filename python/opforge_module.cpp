// The compiled half of the `opforge` Python package (`opforge._opforge`).
// python/opforge/__init__.py builds the documented API on top of it: the
// per-operator functions with their signatures and docstrings, the
// conversions of keyword arguments, torch compatibility.
//
// Images cross as NumPy arrays: H×W or H×W×3, float32 in [0, 1] (uint8 and
// uint16 are scaled by 1/255 and 1/65535 exactly as the image readers scale
// PNG samples). Every call that computes releases the GIL.

#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <cstring>
#include <memory>
#include <mutex>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "opforge/core/threads.hpp"
#include "opforge/datagen/dataset.hpp"
#include "opforge/datagen/generate.hpp"
#include "opforge/datagen/plan.hpp"
#include "opforge/datagen/recipe.hpp"
#include "opforge/model/cpu_executor.hpp"
#include "opforge/model/model.hpp"
#include "opforge/model/spec.hpp"
#include "opforge/vk_runtime/vulkan_executor.hpp"
#include "opforge/operators/registry.hpp"

namespace py = pybind11;

namespace opforge::python {
namespace {

using FloatArray = py::array_t<float, py::array::c_style>;

// An array as an opforge Image (a copy: the operators keep no reference).
template <typename T>
Image image_of(const py::array_t<T, py::array::c_style | py::array::forcecast>& a, double scale) {
  const py::buffer_info b = a.request();
  if (b.ndim != 2 && b.ndim != 3) {
    throw Error("an image array has 2 (H×W) or 3 (H×W×C) dimensions, not " + std::to_string(b.ndim));
  }
  const int channels = b.ndim == 3 ? static_cast<int>(b.shape[2]) : 1;
  if (channels != 1 && channels != 3) {
    throw Error("an image array has 1 or 3 channels (grey or RGB), not " + std::to_string(channels));
  }
  if (b.shape[0] < 1 || b.shape[1] < 1 || b.shape[0] > 65536 || b.shape[1] > 65536) {
    throw Error("an image array is " + std::to_string(b.shape[1]) + "x" + std::to_string(b.shape[0]) +
                "; valid: 1..65536 pixels on each side");
  }
  Image img(static_cast<int>(b.shape[0]), static_cast<int>(b.shape[1]), CV_32FC(channels));
  const T* src = static_cast<const T*>(b.ptr);
  float* dst = img.ptr<float>(0);
  const std::size_t n = img.total() * static_cast<std::size_t>(channels);
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      dst[i] = src[i];
    } else {
      dst[i] = static_cast<float>(static_cast<double>(src[i]) / scale);
    }
  }
  return img;
}

// Any accepted array: float32 as it is, uint8 and uint16 scaled to [0, 1];
// other dtypes are refused rather than guessed at.
Image to_image(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.is(py::dtype::of<float>())) return image_of<float>(a, 1.0);
  if (dt.is(py::dtype::of<std::uint8_t>())) return image_of<std::uint8_t>(a, 255.0);
  if (dt.is(py::dtype::of<std::uint16_t>())) return image_of<std::uint16_t>(a, 65535.0);
  throw Error("an image array of dtype " + dt.attr("name").cast<std::string>() + " is not accepted; valid: float32 in [0, 1], "
              "uint8 or uint16");
}

FloatArray to_array(const Image& img) {
  const int channels = img.channels();
  std::vector<py::ssize_t> shape = {img.rows, img.cols};
  if (channels == 3) shape.push_back(3);
  FloatArray out(shape);
  const Image packed = img.isContinuous() ? img : img.clone();
  std::memcpy(out.mutable_data(), packed.ptr<float>(0), packed.total() * static_cast<std::size_t>(channels) * sizeof(float));
  return out;
}

FloatArray apply(const std::string& name, const py::array& array, const std::map<std::string, std::string>& params,
                 std::uint64_t seed) {
  const OperatorEntry& op = find_operator(name);
  const ParamValues values = op.resolve(params);
  const Image input = to_image(array);
  Image result;
  {
    py::gil_scoped_release release;
    result = op.apply(input, values, {.seed = seed});
  }
  return to_array(result);
}

FloatArray read_array(const std::filesystem::path& path) {
  Image img;
  {
    py::gil_scoped_release release;
    img = read_image(path);
  }
  return to_array(img);
}

void write_array(const std::filesystem::path& path, const py::array& array, int depth) {
  if (depth != 8 && depth != 16) throw Error("depth " + std::to_string(depth) + " is invalid; valid: 8 or 16");
  require_writable_extension(path);
  const Image img = to_image(array);
  py::gil_scoped_release release;
  write_image(path, img, {.png_depth = depth});
}

py::dict metrics(const py::array& a, const py::array& b, bool y_channel, int shave) {
  const Image x = to_image(a), y = to_image(b);
  Metrics m;
  {
    py::gil_scoped_release release;
    m = compare_images(x, y, {.y_channel = y_channel, .shave = shave});
  }
  py::dict out;
  out["psnr"] = m.psnr_db;
  out["ssim"] = m.ssim;
  out["max_abs"] = m.max_abs;
  return out;
}

// A finished dataset: rows as JSON text (the Python side parses them once)
// and each row's two images.
class PyDataset {
 public:
  explicit PyDataset(const std::filesystem::path& dir) : data_(datagen::Dataset::open(dir)) {}
  std::size_t size() const { return data_.rows().size(); }
  std::string row_json(std::size_t i) const { return row(i).to_json().dump(); }
  std::pair<FloatArray, FloatArray> images(std::size_t i) const {
    const datagen::DatasetRow& r = row(i);
    Image input, output;
    {
      py::gil_scoped_release release;
      input = read_image(data_.dir() / r.input_file);
      output = read_image(data_.dir() / r.output_file);
    }
    return {to_array(input), to_array(output)};
  }
  std::vector<std::size_t> split(std::size_t validation_sources, std::uint64_t seed, bool validation) const {
    const datagen::Split s = datagen::split_by_source(data_.rows(), validation_sources, seed);
    return validation ? s.validation : s.train;
  }

 private:
  const datagen::DatasetRow& row(std::size_t i) const {
    if (i >= data_.rows().size()) {
      throw py::index_error("row " + std::to_string(i) + " of a dataset of " + std::to_string(data_.rows().size()));
    }
    return data_.rows()[i];
  }
  datagen::Dataset data_;
};

// Pairs made on demand, exactly as datagen makes them: pair k is source
// k / pairs_per_source, pair index k % pairs_per_source.
class PySampler {
 public:
  PySampler(const std::filesystem::path& recipe, const std::optional<std::string>& sources)
      : recipe_(datagen::load_recipe(recipe)) {
    sources_ = sources ? datagen::list_sources({datagen::source_spec_from_argument(*sources)}, std::filesystem::current_path())
                       : datagen::list_sources(recipe_.sources, recipe_.base_dir);
  }
  std::size_t size() const { return sources_.size() * static_cast<std::size_t>(recipe_.pairs_per_source); }
  std::string key(std::size_t k) const {
    const auto [s, p] = place(k);
    return datagen::pair_key(s, sources_.size(), p, recipe_.pairs_per_source);
  }
  py::tuple pair(std::size_t k) const {
    const auto [s, p] = place(k);
    datagen::PairImages made;
    {
      py::gil_scoped_release release;
      const std::shared_ptr<const Image> source = preprocessed(s);
      made = datagen::make_pair(recipe_, sources_[s], s, sources_.size(), p, *source);
    }
    py::dict info;
    info["key"] = made.plan.key;
    info["operator"] = made.plan.op->entry->name;
    info["seed"] = made.plan.seed;
    info["source"] = sources_[s].name;
    info["params_json"] = datagen::params_json(*made.plan.op->entry, made.plan.values).dump();
    return py::make_tuple(to_array(made.input), to_array(made.output), info);
  }

 private:
  // Pair k: its source's index and its index among that source's pairs.
  std::pair<std::size_t, int> place(std::size_t k) const {
    if (k >= size()) throw py::index_error("pair " + std::to_string(k) + " of " + std::to_string(size()));
    const auto per_source = static_cast<std::size_t>(recipe_.pairs_per_source);
    return {k / per_source, static_cast<int>(k % per_source)};
  }
  // The last source read and preprocessed, kept for its other pairs.
  std::shared_ptr<const Image> preprocessed(std::size_t s) const {
    std::lock_guard lock(mutex_);
    if (cached_index_ != s || !cached_) {
      Image img = datagen::preprocess_source(recipe_, read_image(sources_[s].path, recipe_.limits));
      cached_ = std::make_shared<const Image>(std::move(img));
      cached_index_ = s;
    }
    return cached_;
  }

  datagen::Recipe recipe_;
  std::vector<datagen::SourceImage> sources_;
  mutable std::mutex mutex_;
  mutable std::shared_ptr<const Image> cached_;
  mutable std::size_t cached_index_ = SIZE_MAX;
};

py::dict generate(const std::filesystem::path& recipe_path, const std::optional<std::string>& sources,
                  const std::filesystem::path& out, std::optional<int> threads, bool resume,
                  const std::function<void(std::size_t, std::size_t, std::size_t, double)>& progress) {
  const datagen::Recipe recipe = datagen::load_recipe(recipe_path);
  datagen::RunOptions options{.out_dir = out, .resume = resume, .threads = threads};
  if (sources) options.sources = datagen::source_spec_from_argument(*sources);
  if (progress) {
    options.progress = [&progress](const datagen::RunProgress& p) {
      py::gil_scoped_acquire hold;
      progress(p.done, p.planned, p.failed, p.seconds);
    };
  }
  datagen::RunSummary s;
  {
    py::gil_scoped_release release;
    s = datagen::generate(recipe, options);
  }
  py::dict summary;
  summary["planned"] = s.planned;
  summary["written"] = s.written;
  summary["reused"] = s.reused;
  summary["failed"] = s.failed;
  summary["seconds"] = s.seconds;
  summary["finalized"] = s.finalized;
  return summary;
}

// A learned model and the executors that ran it (made on first use, kept:
// a Vulkan executor caches its pipelines).
class PyModel {
 public:
  explicit PyModel(const std::filesystem::path& path) : model_(model::Model::load(path)) {}

  FloatArray run(const py::array& array, const std::optional<std::vector<float>>& planes,
                 const std::optional<std::string>& op, const std::optional<std::map<std::string, double>>& params,
                 const std::string& device, std::optional<int> device_index, bool fp16) {
    if (static_cast<int>(planes.has_value()) + op.has_value() + params.has_value() > 1) {
      throw Error("give one of planes, operator and params");
    }
    if (device != "cpu" && device != "vulkan") throw Error("device '" + device + "' is invalid; valid: cpu, vulkan");
    if ((device_index || fp16) && device == "cpu") throw Error("device_index and fp16 need device='vulkan'");
    std::vector<float> values;
    if (planes) values = *planes;
    if (op) values = model_.operator_planes(*op);
    if (params) values = model_.planes_for("", *params);
    model_.check_planes(values);
    const Image input = to_image(array);
    model::Executor& executor = executor_for(device, device_index, fp16);
    Image raw;
    {
      py::gil_scoped_release release;
      std::lock_guard lock(mutex_);  // an executor runs one image at a time
      raw = executor.run(model_, input, values);
    }
    return to_array(raw);
  }

  std::map<std::string, std::string> metadata() const {
    std::map<std::string, std::string> all = model::spec_metadata(model_.spec());
    for (const auto& [key, value] : model_.provenance()) all[key] = value;
    return all;
  }

 private:
  model::Executor& executor_for(const std::string& device, std::optional<int> device_index, bool fp16) {
    if (device == "cpu") {
      if (!cpu_) cpu_ = std::make_unique<model::CpuExecutor>();
      return *cpu_;
    }
    if (!vulkan_ || vulkan_index_ != device_index || vulkan_fp16_ != fp16) {
      vk::VulkanOptions options;
      options.device_index = device_index;
      options.fp16_storage = fp16;
      vulkan_ = std::make_unique<vk::VulkanExecutor>(options);
      vulkan_index_ = device_index;
      vulkan_fp16_ = fp16;
    }
    return *vulkan_;
  }

  model::Model model_;
  std::mutex mutex_;
  std::unique_ptr<model::Executor> cpu_, vulkan_;
  std::optional<int> vulkan_index_;
  bool vulkan_fp16_ = false;
};

// The process-wide worker limit of set_threads (None: every core).
void set_threads(std::optional<int> threads) {
  static std::optional<ThreadLimit> limit;
  limit.reset();
  if (threads) limit.emplace(threads);
}

}  // namespace
}  // namespace opforge::python

PYBIND11_MODULE(_opforge, m) {
  using namespace opforge;
  using namespace opforge::python;
  m.doc() = "The compiled half of opforge; use the `opforge` package.";
  // The CLI's one-line errors, as Python exceptions.
  py::register_exception<WriteError>(m, "WriteError", PyExc_OSError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const WriteError&) {
      throw;
    } catch (const Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("registry_json", &registry_json);
  m.def("set_threads", &set_threads, py::arg("threads"));
  m.def("apply", &apply, py::arg("name"), py::arg("image"), py::arg("params"), py::arg("seed"));
  m.def("read_image", &read_array, py::arg("path"));
  m.def("write_image", &write_array, py::arg("path"), py::arg("image"), py::arg("depth"));
  m.def("metrics", &metrics, py::arg("a"), py::arg("b"), py::arg("y_channel"), py::arg("shave"));
  m.def("generate", &generate, py::arg("recipe"), py::arg("sources"), py::arg("out"), py::arg("threads"),
        py::arg("resume"), py::arg("progress"));
  py::class_<PyDataset>(m, "DatasetFiles")
      .def(py::init<const std::filesystem::path&>(), py::arg("dir"))
      .def("__len__", &PyDataset::size)
      .def("row_json", &PyDataset::row_json)
      .def("images", &PyDataset::images)
      .def("split", &PyDataset::split);
  py::class_<PyModel>(m, "ModelFile")
      .def(py::init<const std::filesystem::path&>(), py::arg("path"))
      .def("run", &PyModel::run, py::arg("image"), py::arg("planes"), py::arg("operator"), py::arg("params"),
           py::arg("device"), py::arg("device_index"), py::arg("fp16"))
      .def("metadata", &PyModel::metadata);
  py::class_<PySampler>(m, "PairMaker")
      .def(py::init<const std::filesystem::path&, const std::optional<std::string>&>(), py::arg("recipe"),
           py::arg("sources"))
      .def("__len__", &PySampler::size)
      .def("key", &PySampler::key)
      .def("pair", &PySampler::pair);
}
