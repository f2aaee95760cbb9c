#include "eval_plot.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "opforge/core/error.hpp"
#include "opforge/core/io.hpp"

namespace opforge::cli {
namespace {

constexpr int kPanelW = 640, kPanelH = 420, kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;
const cv::Scalar kInk(40, 40, 40), kGrid(225, 225, 225), kModel(200, 90, 20), kIdentity(40, 140, 40), kLoss(30, 30, 200);

struct Series {
  std::vector<double> x, y;
  cv::Scalar colour;
  std::string label;
};

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", v);
  return text;
}

// One panel: axes, a grid of five ticks per axis, the series as lines with
// dots, a legend; x on a log scale when asked.
void draw_panel(cv::Mat& canvas, int x0, const std::string& title, const std::string& xlabel, bool log_x, bool log_y,
                const std::vector<Series>& series) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  const auto fx = [&](double v) { return log_x ? std::log10(v) : v; };
  const auto fy = [&](double v) { return log_y ? std::log10(v) : v; };
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(fx(s.x[i])) || !std::isfinite(fy(s.y[i]))) continue;
      xlo = std::min(xlo, fx(s.x[i])), xhi = std::max(xhi, fx(s.x[i]));
      ylo = std::min(ylo, fy(s.y[i])), yhi = std::max(yhi, fy(s.y[i]));
    }
  cv::putText(canvas, title, {x0 + kLeft, 24}, cv::FONT_HERSHEY_SIMPLEX, 0.55, kInk, 1, cv::LINE_AA);
  const cv::Rect box(x0 + kLeft, kTop, kPanelW - kLeft - kRight, kPanelH - kTop - kBottom);
  cv::rectangle(canvas, box, kInk, 1);
  cv::putText(canvas, xlabel, {x0 + kLeft + box.width / 2 - 40, kPanelH - 10}, cv::FONT_HERSHEY_SIMPLEX, 0.45, kInk, 1, cv::LINE_AA);
  if (!(xlo <= xhi) || !(ylo <= yhi)) {
    cv::putText(canvas, "no data", {box.x + 20, box.y + 40}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1, cv::LINE_AA);
    return;
  }
  if (xhi - xlo < 1e-12) xlo -= 0.5, xhi += 0.5;
  const double pad = std::max(1e-9, 0.05 * (yhi - ylo));
  ylo -= pad, yhi += pad;
  const auto px = [&](double v) { return box.x + int(std::lround((fx(v) - xlo) / (xhi - xlo) * box.width)); };
  const auto py = [&](double v) { return box.y + box.height - int(std::lround((fy(v) - ylo) / (yhi - ylo) * box.height)); };
  for (int k = 0; k <= 4; ++k) {
    const double tx = xlo + k * (xhi - xlo) / 4, ty = ylo + k * (yhi - ylo) / 4;
    const int gx = box.x + k * box.width / 4, gy = box.y + box.height - k * box.height / 4;
    if (k > 0 && k < 4) {
      cv::line(canvas, {gx, box.y + 1}, {gx, box.y + box.height - 1}, kGrid, 1);
      cv::line(canvas, {box.x + 1, gy}, {box.x + box.width - 1, gy}, kGrid, 1);
    }
    cv::putText(canvas, number(log_x ? std::pow(10, tx) : tx), {gx - 18, box.y + box.height + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.38,
                kInk, 1, cv::LINE_AA);
    cv::putText(canvas, number(log_y ? std::pow(10, ty) : ty), {x0 + 4, gy + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.38, kInk, 1,
                cv::LINE_AA);
  }
  int legend_y = box.y + 18;
  for (const auto& s : series) {
    std::vector<cv::Point> points;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (std::isfinite(fx(s.x[i])) && std::isfinite(fy(s.y[i]))) points.push_back({px(s.x[i]), py(s.y[i])});
    }
    if (points.size() > 1) cv::polylines(canvas, points, false, s.colour, 1, cv::LINE_AA);
    if (points.size() < 60) {
      for (const auto& p : points) cv::circle(canvas, p, 3, s.colour, cv::FILLED, cv::LINE_AA);
    }
    cv::line(canvas, {box.x + box.width - 170, legend_y - 4}, {box.x + box.width - 150, legend_y - 4}, s.colour, 2);
    cv::putText(canvas, s.label, {box.x + box.width - 144, legend_y}, cv::FONT_HERSHEY_SIMPLEX, 0.42, kInk, 1, cv::LINE_AA);
    legend_y += 18;
  }
}

// PSNR per parameter bin, at each bin's centre (geometric for log-spaced bins).
void draw_bins(cv::Mat& canvas, int x0, const learner::EvalResult& result) {
  Series model{{}, {}, kModel, "model dB"}, identity{{}, {}, kIdentity, "identity dB"};
  bool log_x = false;
  for (const auto& b : result.bins) {
    const bool geometric = b.lo > 0 && b.hi / b.lo >= 2;
    log_x = log_x || geometric;
    const double centre = geometric ? std::sqrt(b.lo * b.hi) : (b.lo + b.hi) / 2;
    model.x.push_back(centre), model.y.push_back(b.scores.psnr_db);
    identity.x.push_back(centre), identity.y.push_back(b.scores.identity_psnr_db);
  }
  if (result.bins.empty()) {  // one parameter value: the overall scores
    model.x = identity.x = {0};
    model.y = {result.overall.psnr_db}, identity.y = {result.overall.identity_psnr_db};
  }
  const std::string param = result.bins.empty() ? "" : result.bins[0].param;
  draw_panel(canvas, x0, param.empty() ? "PSNR (one parameter value)" : "PSNR per " + param + " bin", param, log_x, false,
             {model, identity});
}

}  // namespace

void write_eval_plot(const std::filesystem::path& out, const std::filesystem::path& train_log,
                     const learner::EvalResult& result) {
  const int panels = train_log.empty() ? 1 : 3;
  cv::Mat canvas(kPanelH, panels * kPanelW, CV_8UC3, cv::Scalar(255, 255, 255));
  if (!train_log.empty()) {
    std::ifstream in(train_log);
    if (!in) throw Error("cannot read the training log '" + train_log.string() + "'");
    Series loss{{}, {}, kLoss, "loss, 50-step means"}, validation{{}, {}, kModel, "validation dB"},
        identity{{}, {}, kIdentity, "identity dB"};
    double sum = 0;
    int count = 0;
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("step")) continue;
      const double step = j["step"].get<double>();
      if (j.contains("loss")) {
        // Means over runs of steps keep a noisy per-crop loss readable.
        sum += j["loss"].get<double>();
        if (++count == 50) loss.x.push_back(step), loss.y.push_back(sum / count), sum = 0, count = 0;
      }
      if (j.contains("validation_psnr_db") && j["validation_psnr_db"].is_number()) {
        validation.x.push_back(step), validation.y.push_back(j["validation_psnr_db"].get<double>());
        identity.x.push_back(step), identity.y.push_back(j["identity_psnr_db"].get<double>());
      }
    }
    draw_panel(canvas, 0, "training loss", "step", false, true, {loss});
    draw_panel(canvas, kPanelW, "held-out PSNR", "step", false, false, {validation, identity});
  }
  draw_bins(canvas, (panels - 1) * kPanelW, result);
  Image rgb;
  canvas.convertTo(rgb, CV_32F, 1.0 / 255);
  cv::cvtColor(rgb, rgb, cv::COLOR_BGR2RGB);
  write_image(out, rgb);
}

}  // namespace opforge::cli
