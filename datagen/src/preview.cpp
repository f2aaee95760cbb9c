#include "opforge/datagen/preview.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"
#include "opforge/datagen/plan.hpp"

namespace opforge::datagen {
namespace fs = std::filesystem;

namespace {

constexpr int kTextWidth = 340;
constexpr int kGap = 6;

Image thumbnail(const Image& img, int height) {
  Image rgb;
  if (img.channels() == 1) {
    cv::Mat planes[] = {img, img, img};
    cv::merge(planes, 3, rgb);
  } else {
    rgb = img;
  }
  const int width = std::clamp(static_cast<int>(std::lround(static_cast<double>(img.cols) * height / img.rows)), 1, 2 * height);
  Image out;
  cv::resize(rgb, out, cv::Size(width, height), 0, 0, cv::INTER_AREA);
  cv::min(cv::max(out, 0.0), 1.0, out);
  return out;
}

struct Cell {
  Image input, output;
  std::vector<std::string> lines;
};

}  // namespace

Image contact_sheet(const Recipe& recipe, const PreviewOptions& options) {
  if (options.pairs < 1 || options.pairs > 200) {
    throw Error("--pairs " + std::to_string(options.pairs) + " is out of range; valid: 1..200");
  }
  if (options.thumbnail_height < 32 || options.thumbnail_height > 1024) {
    throw Error("--thumbnail " + std::to_string(options.thumbnail_height) + " is out of range; valid: 32..1024");
  }
  const std::vector<SourceImage> sources = options.sources
                                               ? list_sources({*options.sources}, fs::current_path())
                                               : list_sources(recipe.sources, recipe.base_dir);
  std::vector<std::pair<std::size_t, int>> picks;
  for (int p = 0; p < recipe.pairs_per_source && static_cast<int>(picks.size()) < options.pairs; ++p) {
    for (std::size_t s = 0; s < sources.size() && static_cast<int>(picks.size()) < options.pairs; ++s) picks.emplace_back(s, p);
  }

  // Each source shown is read and preprocessed once, whatever its number of pairs.
  const std::size_t shown = std::min(sources.size(), picks.size());
  std::vector<Image> loaded(shown);
  std::vector<std::string> load_error(shown);
  tbb::parallel_for(std::size_t{0}, shown, [&](std::size_t s) {
    try {
      loaded[s] = preprocess_source(recipe, read_image(sources[s].path, recipe.limits));
    } catch (const std::bad_alloc&) {
      load_error[s] = "out of memory decoding '" + sources[s].path.string() + "'";
    } catch (const std::exception& e) {  // opforge::Error, cv::Exception: one bad source is one failed cell
      load_error[s] = e.what();
    }
  });

  const int h = options.thumbnail_height;
  std::vector<Cell> cells(picks.size());
  tbb::parallel_for(std::size_t{0}, picks.size(), [&](std::size_t i) {
    const auto [s, p] = picks[i];
    Cell& cell = cells[i];
    try {
      if (!load_error[s].empty()) throw Error(load_error[s]);
      const PairImages pair = make_pair(recipe, sources[s], s, sources.size(), p, loaded[s]);
      cell.input = thumbnail(pair.input, h);
      cell.output = thumbnail(pair.output, h);
      cell.lines.push_back(pair.plan.key + "  " + pair.plan.op->entry->name);
      // The parameters the recipe sets or samples; the rest are defaults.
      for (const auto& [name, distribution] : pair.plan.op->params) {
        const ParamValue& value = pair.plan.values.all().at(name);
        char text[64];
        if (const double* v = std::get_if<double>(&value)) std::snprintf(text, sizeof text, "%.4g", *v);
        cell.lines.push_back("  " + name + " = " + (std::holds_alternative<double>(value) ? text : format_value(value)));
      }
    } catch (const std::exception& e) {
      cell.lines.push_back(pair_key(s, sources.size(), p, recipe.pairs_per_source) + "  FAILED");
      const std::string what = dynamic_cast<const std::bad_alloc*>(&e) ? "out of memory" : e.what();
      for (std::size_t k = 0; k < what.size(); k += 48) cell.lines.push_back("  " + what.substr(k, 48));
    }
    cell.lines.push_back("  " + fs::path(sources[s].name).filename().string());
  });

  int image_width = 0;
  for (const auto& c : cells) image_width = std::max(image_width, c.input.cols + c.output.cols + kGap);
  image_width = std::max(image_width, 2 * h + kGap);
  std::vector<int> heights;
  for (const auto& c : cells) heights.push_back(std::max(h, 16 * static_cast<int>(c.lines.size()) + 8));
  int total_height = kGap;
  for (int ch : heights) total_height += ch + kGap;
  Image sheet(total_height, kGap + image_width + kGap + kTextWidth, CV_32FC3, cv::Scalar(1, 1, 1));
  int y = kGap;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const Cell& c = cells[i];
    int x = kGap;
    if (!c.input.empty()) {
      c.input.copyTo(sheet(cv::Rect(x, y, c.input.cols, c.input.rows)));
      x += c.input.cols + kGap;
      c.output.copyTo(sheet(cv::Rect(x, y, c.output.cols, c.output.rows)));
    }
    for (std::size_t l = 0; l < c.lines.size(); ++l) {
      cv::putText(sheet, c.lines[l], cv::Point(kGap + image_width + kGap, y + 14 + 16 * static_cast<int>(l)),
                  cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    }
    y += heights[i] + kGap;
  }
  return sheet;
}

}  // namespace opforge::datagen
