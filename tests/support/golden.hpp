#pragma once
// The golden-test harness: every case of a conformance variant copied from
// the authors' reference outputs into tests/data/conformance/<variant>/.
//
// The gate (OPERATORS.md §0.2) is the PSNR of our output, clipped and
// quantised to 16 bits like the reference PNG, against that PNG; where the
// case has an unclipped `.f32.npy`, the unquantised output is compared with it
// too. Measured values are printed and recorded as test properties.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "opforge/core/io.hpp"
#include "opforge/core/metrics.hpp"
#include "test_support.hpp"

namespace opforge::test {

/// Case names (file stems of the sidecars) of one variant, sorted.
inline std::vector<std::string> golden_cases(const std::string& variant) {
  std::vector<std::string> cases;
  for (const auto& e : std::filesystem::directory_iterator(data_path("conformance/" + variant))) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".json" && name.find("__") == std::string::npos) cases.push_back(e.path().stem().string());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

/// A gtest-safe name for a case ("carving256_lambda0.02" → "carving256_lambda0_02").
inline std::string golden_test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return s;
}

struct GoldenCase {
  std::string variant, name;
  nlohmann::json sidecar;

  GoldenCase(std::string v, std::string n) : variant(std::move(v)), name(std::move(n)) {
    sidecar = nlohmann::json::parse(std::ifstream(data_path("conformance/" + variant + "/" + name + ".json")));
  }
  double param(const std::string& key) const { return sidecar.at("params").at(key).get<double>(); }
  Image input() const { return read_image(data_path("conformance/" + sidecar.at("input").get<std::string>())); }

  /// Checks `out` against the reference PNG (and npy, if any) at `gate_db`.
  void expect_matches(const Image& out, double gate_db) const {
    const Image reference = read_image(data_path("conformance/" + variant + "/" + sidecar.at("png").get<std::string>()));
    const double db = psnr(quantize16(out), reference);
    std::cout << "[ golden ] " << variant << "/" << name << ": PSNR vs 16-bit reference " << db << " dB\n";
    ::testing::Test::RecordProperty("psnr_png_db", std::to_string(db));
    EXPECT_GE(db, gate_db) << variant << "/" << name;
    const auto npy = sidecar.find("npy");
    if (npy != sidecar.end() && !npy->is_null()) {
      const Image ref_npy = read_image(data_path("conformance/" + variant + "/" + npy->get<std::string>()));
      const double db_npy = psnr(out, ref_npy);
      std::cout << "[ golden ] " << variant << "/" << name << ": PSNR vs float32 reference " << db_npy << " dB\n";
      ::testing::Test::RecordProperty("psnr_npy_db", std::to_string(db_npy));
      EXPECT_GE(db_npy, gate_db) << variant << "/" << name << " (npy)";
    }
  }
};

}  // namespace opforge::test
