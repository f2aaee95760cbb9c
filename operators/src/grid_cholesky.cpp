// GridCholesky: a multifrontal Cholesky factorisation of D + L_a along the
// grid's geometric nested dissection (grid_solver.hpp).
//
// The dissection tree is the one grid_nested_dissection orders by: a region
// is split across its longer side by one row or column (its separator), the
// two halves are dissected in turn, and regions of at most 16 pixels are
// leaves whose "separator" is all of their pixels. Eliminating a connected
// region R couples every pair of pixels just outside it, so the Schur
// complement R leaves behind is dense on its outer boundary B(R) — at most
// the four lines around R, all of them on separators of R's ancestors. The
// front of a node is therefore known from geometry alone: its separator S,
// then B(R). Factorising a node assembles its entries of D + L_a and the two
// children's update matrices (both over pixels of S ∪ B(R)) into the front,
// factors the S columns (LAPACK dpotrf, dtrsm) and passes the Schur
// complement on B(R) (dsyrk) up to the parent.
//
// Against CHOLMOD's supernodal factorisation of the same ordering this skips
// the general sparse machinery (elimination tree and supernode detection, a
// matrix transpose per factorisation, one OpenMP region per supernode update)
// and runs the two subtrees of large nodes in parallel under TBB. Every node
// does the same arithmetic in the same order whatever the schedule, so
// results do not depend on the thread count.

#include <sys/mman.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>

#include "blas.hpp"
#include "opforge/operators/grid_solver.hpp"

namespace opforge {
namespace {

constexpr int kLeafPixels = 16;           // regions this small are not split
constexpr int kBlasFront = 64;            // fronts at least this large go to BLAS; smaller ones run inline
constexpr std::size_t kParallelPixels = 1 << 14;  // subtrees at least this large run their halves in parallel

// One coefficient of D + L_a assembled into a node's front: front position
// (row ≥ col, col always in the separator) and where its value comes from.
struct Entry {
  int row, col;
  int pixel;
  enum Kind : int { diagonal, horizontal, vertical } kind;
};

// The factor's storage: one block of doubles, given to the kernel's
// transparent huge pages where it allows them. A fresh factor at 1 MP is
// ~530 MB; faulting it in 4 KiB pages cost more than half a second on the
// virtual machines measured, in 2 MiB pages a fifth of that.
class FactorStorage {
 public:
  explicit FactorStorage(std::size_t count) : bytes_(std::max<std::size_t>(count, 1) * sizeof(double)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes_, MADV_HUGEPAGE);  // advice only: ignored where THP is off
    data_ = static_cast<double*>(p);
  }
  ~FactorStorage() { munmap(data_, bytes_); }
  FactorStorage(const FactorStorage&) = delete;
  FactorStorage& operator=(const FactorStorage&) = delete;
  double* data() const { return data_; }

 private:
  std::size_t bytes_;
  double* data_ = nullptr;
};

// Factors the separator columns of the front [P | U]: P is the f×s panel
// (column-major, leading dimension f) holding the separator columns, U the
// b×b lower triangle of the boundary block (f = s + b). On return P holds
// [L_SS; L_BS] and U the Schur complement U − L_BS·L_BSᵀ.
void factor_front(double* panel, int f, int s, double* update, int b) {
  if (f >= kBlasFront) {
    int info = 0;
    dpotrf_("L", &s, panel, &f, &info, 1);
    if (info != 0) throw std::runtime_error("grid system is not positive definite");
    if (b > 0) {
      const double one = 1.0, minus_one = -1.0;
      dtrsm_("R", "L", "T", "N", &b, &s, &one, panel, &f, panel + s, &f, 1, 1, 1, 1);
      dsyrk_("L", "N", &b, &s, &minus_one, panel + s, &f, &one, update, &b, 1, 1);
    }
    return;
  }
  // Small fronts: right-looking, column by column.
  for (int k = 0; k < s; ++k) {
    double* ck = panel + static_cast<std::size_t>(k) * f;
    if (!(ck[k] > 0.0)) throw std::runtime_error("grid system is not positive definite");
    const double d = std::sqrt(ck[k]);
    ck[k] = d;
    const double inv = 1.0 / d;
    for (int i = k + 1; i < f; ++i) ck[i] *= inv;
    for (int j = k + 1; j < s; ++j) {
      double* cj = panel + static_cast<std::size_t>(j) * f;
      const double l = ck[j];
      for (int i = j; i < f; ++i) cj[i] -= ck[i] * l;
    }
    for (int j = 0; j < b; ++j) {
      double* uj = update + static_cast<std::size_t>(j) * b;
      const double l = ck[s + j];
      for (int i = j; i < b; ++i) uj[i] -= ck[s + i] * l;
    }
  }
}

// The forward step of the front z = [z_S; z_B] (f = s + b values):
// z_S ← L_SS⁻¹ z_S, z_B ← z_B − L_BS z_S.
void forward_front(const double* panel, int f, int s, double* z) {
  const int b = f - s;
  if (f >= kBlasFront) {
    const int one = 1;
    const double minus_one = -1.0, plus_one = 1.0;
    dtrsv_("L", "N", "N", &s, panel, &f, z, &one, 1, 1, 1);
    if (b > 0) dgemv_("N", &b, &s, &minus_one, panel + s, &f, z, &one, &plus_one, z + s, &one, 1);
    return;
  }
  for (int k = 0; k < s; ++k) {
    const double* ck = panel + static_cast<std::size_t>(k) * f;
    const double zk = z[k] / ck[k];
    z[k] = zk;
    for (int i = k + 1; i < f; ++i) z[i] -= ck[i] * zk;
  }
}

// The backward step, z_B already solved: z_S ← L_SS⁻ᵀ (z_S − L_BSᵀ z_B).
void backward_front(const double* panel, int f, int s, double* z) {
  const int b = f - s;
  if (f >= kBlasFront) {
    const int one = 1;
    const double minus_one = -1.0, plus_one = 1.0;
    if (b > 0) dgemv_("T", &b, &s, &minus_one, panel + s, &f, z + s, &one, &plus_one, z, &one, 1);
    dtrsv_("L", "T", "N", &s, panel, &f, z, &one, 1, 1, 1);
    return;
  }
  for (int k = s - 1; k >= 0; --k) {
    const double* ck = panel + static_cast<std::size_t>(k) * f;
    double sum = z[k];
    for (int i = k + 1; i < f; ++i) sum -= ck[i] * z[i];
    z[k] = sum / ck[k];
  }
}

// Boundary entries [first, first + length) of a child map to consecutive
// positions of its parent's front from `target` on.
struct Run {
  int first, length, target;
};

}  // namespace

struct GridCholesky::Node {
  int child[2] = {-1, -1};
  int separator = 0;            // front[0, separator) are eliminated at this node
  std::vector<int> front;       // pixels: the separator, then the boundary in the parent's front order
  std::vector<int> to_parent;   // position in the parent's front of each boundary pixel (increasing)
  std::vector<Run> runs;        // to_parent as runs of consecutive positions
  std::vector<Entry> entries;   // the coefficients of D + L_a assembled here
  std::size_t panel = 0;        // offset of the f×s panel in the factor storage
  std::size_t pixels = 0;       // pixels of the node's region
};

struct GridCholesky::Numeric {
  explicit Numeric(std::size_t count) : storage(count) {}
  FactorStorage storage;

  // Large update matrices are recycled: from the heap each would be a fresh
  // mapping, zeroed by the kernel page by page (an eighth of a 1 MP
  // factorisation's time, measured); a node's children finish before it
  // needs its own, so a few buffers serve the whole tree.
  static constexpr std::size_t kRecycled = std::size_t{1} << 16;  // doubles (512 KiB) and up
  std::mutex spare_mutex;
  std::vector<std::vector<double>> spare;

  std::vector<double> zeroed(std::size_t count) {
    std::vector<double> v;
    if (count >= kRecycled) {
      std::lock_guard lock(spare_mutex);
      auto best = spare.end();
      for (auto it = spare.begin(); it != spare.end(); ++it) {
        if (it->capacity() >= count && (best == spare.end() || it->capacity() < best->capacity())) best = it;
      }
      if (best != spare.end()) {
        v = std::move(*best);
        spare.erase(best);
      }
    }
    v.assign(count, 0.0);
    return v;
  }
  void recycle(std::vector<double>&& v) {
    if (v.capacity() < kRecycled) return;
    std::lock_guard lock(spare_mutex);
    spare.push_back(std::move(v));
    if (spare.size() > 16) {  // keep the largest
      spare.erase(std::min_element(spare.begin(), spare.end(),
                                   [](const auto& x, const auto& y) { return x.capacity() < y.capacity(); }));
    }
  }
};

namespace {

// Builds the dissection tree of [y0,y1)×[x0,x1) in post-order (children
// before their parent); returns the node's index, or -1 for an empty region.
// Boundaries are ordered afterwards. The separators in post-order are
// grid_nested_dissection's elimination order: computed in milliseconds at
// 1 MP where AMD took about a second, and CHOLMOD's factorisation with it is
// as fast as with AMD (2.04e10 vs 2.02e10 flops; its factor 12 % larger).
template <class Node>
int build_tree(int rows, int cols, int y0, int y1, int x0, int x1, std::vector<Node>& nodes) {
  const int h = y1 - y0, w = x1 - x0;
  if (h <= 0 || w <= 0) return -1;
  Node node;
  node.pixels = static_cast<std::size_t>(h) * w;
  if (h * w <= kLeafPixels) {
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) node.front.push_back(y * cols + x);
    }
  } else if (w >= h) {
    const int m = x0 + w / 2;
    node.child[0] = build_tree(rows, cols, y0, y1, x0, m, nodes);
    node.child[1] = build_tree(rows, cols, y0, y1, m + 1, x1, nodes);
    for (int y = y0; y < y1; ++y) node.front.push_back(y * cols + m);
  } else {
    const int m = y0 + h / 2;
    node.child[0] = build_tree(rows, cols, y0, m, x0, x1, nodes);
    node.child[1] = build_tree(rows, cols, m + 1, y1, x0, x1, nodes);
    for (int x = x0; x < x1; ++x) node.front.push_back(m * cols + x);
  }
  node.separator = static_cast<int>(node.front.size());
  // The outer boundary of the region: what its elimination couples.
  // Line by line, so that a child's boundary maps onto few runs of it.
  if (y0 > 0) {
    for (int x = x0; x < x1; ++x) node.front.push_back((y0 - 1) * cols + x);
  }
  if (y1 < rows) {
    for (int x = x0; x < x1; ++x) node.front.push_back(y1 * cols + x);
  }
  if (x0 > 0) {
    for (int y = y0; y < y1; ++y) node.front.push_back(y * cols + x0 - 1);
  }
  if (x1 < cols) {
    for (int y = y0; y < y1; ++y) node.front.push_back(y * cols + x1);
  }
  nodes.push_back(std::move(node));
  return static_cast<int>(nodes.size()) - 1;
}

// The fields of a dissection node build_tree fills.
struct Region {
  int child[2] = {-1, -1};
  int separator = 0;
  std::vector<int> front;
  std::size_t pixels = 0;
};

}  // namespace

std::vector<int> grid_nested_dissection(int rows, int cols) {
  std::vector<Region> regions;
  build_tree(rows, cols, 0, rows, 0, cols, regions);
  std::vector<int> order;
  order.reserve(static_cast<std::size_t>(rows) * cols);
  for (const Region& r : regions) order.insert(order.end(), r.front.begin(), r.front.begin() + r.separator);
  return order;
}

GridCholesky::GridCholesky(int rows, int cols) : rows_(rows), cols_(cols) {
  if (rows < 1 || cols < 1) throw std::invalid_argument("GridCholesky: empty grid");
  single_threaded_blas();
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  std::vector<int> pos(n, -1);
  nodes_.reserve(n / 4 + 16);
  build_tree(rows, cols, 0, rows, 0, cols, nodes_);
  // Each child's boundary lies in its parent's front: order it as that front
  // does (so an update's lower triangle lands in the parent's), from the root
  // down, each front final before its children are ordered against it.
  for (auto node = nodes_.rbegin(); node != nodes_.rend(); ++node) {
    for (int i = 0; i < static_cast<int>(node->front.size()); ++i) pos[node->front[i]] = i;
    for (int c : node->child) {
      if (c < 0) continue;
      Node& child = nodes_[c];
      const auto boundary = child.front.begin() + child.separator;
      std::sort(boundary, child.front.end(), [&](int a, int b) { return pos[a] < pos[b]; });
      for (auto it = boundary; it != child.front.end(); ++it) {
        if (pos[*it] < 0) throw std::logic_error("GridCholesky: a child's boundary is outside its parent's front");
        child.to_parent.push_back(pos[*it]);
      }
      for (int i = 0; i < static_cast<int>(child.to_parent.size()); ++i) {
        if (i == 0 || child.to_parent[i] != child.to_parent[i - 1] + 1) child.runs.push_back({i, 0, child.to_parent[i]});
        ++child.runs.back().length;
      }
    }
    for (int p : node->front) pos[p] = -1;
  }
  // The coefficients each node assembles: the diagonal of each separator
  // pixel, and each edge at the node that eliminates its first end, seen
  // from that end: the other end is later in the front (an edge into a
  // child's region was assembled in that child).
  for (Node& node : nodes_) {
    for (int i = 0; i < static_cast<int>(node.front.size()); ++i) pos[node.front[i]] = i;
    for (int i = 0; i < node.separator; ++i) {
      const int p = node.front[i], y = p / cols, x = p % cols;
      node.entries.push_back({i, i, p, Entry::diagonal});
      const auto edge = [&](int q, int pixel, Entry::Kind kind) {
        if (pos[q] > i) node.entries.push_back({pos[q], i, pixel, kind});
      };
      if (x + 1 < cols) edge(p + 1, p, Entry::horizontal);
      if (x > 0) edge(p - 1, p - 1, Entry::horizontal);
      if (y + 1 < rows) edge(p + cols, p, Entry::vertical);
      if (y > 0) edge(p - cols, p - cols, Entry::vertical);
    }
    for (int p : node.front) pos[p] = -1;
    node.panel = factor_entries_;
    factor_entries_ += node.front.size() * static_cast<std::size_t>(node.separator);
  }
}

GridCholesky::~GridCholesky() = default;

double GridCholesky::factor_nonzeros() const {
  double nnz = 0;
  for (const Node& node : nodes_) {
    const double f = static_cast<double>(node.front.size()), s = node.separator;
    nnz += s * (s + 1) / 2 + (f - s) * s;
  }
  return nnz;
}

std::unique_ptr<GridCholesky::Numeric> GridCholesky::acquire() const {
  {
    std::lock_guard lock(idle_mutex_);
    if (!idle_.empty()) {
      auto numeric = std::move(idle_.back());
      idle_.pop_back();
      return numeric;
    }
  }
  return std::make_unique<Numeric>(factor_entries_);
}

void GridCholesky::release(std::unique_ptr<Numeric> numeric) const {
  std::lock_guard lock(idle_mutex_);
  if (idle_.size() < kKeepNumeric) idle_.push_back(std::move(numeric));
}

std::vector<double> GridCholesky::factor_node(int id, const Coefficients& a, Numeric& numeric) const {
  const Node& node = nodes_[id];
  std::vector<double> child_update[2];
  if (node.child[0] >= 0 && node.child[1] >= 0 && node.pixels >= kParallelPixels) {
    tbb::parallel_invoke([&] { child_update[0] = factor_node(node.child[0], a, numeric); },
                         [&] { child_update[1] = factor_node(node.child[1], a, numeric); });
  } else {
    for (int c = 0; c < 2; ++c) {
      if (node.child[c] >= 0) child_update[c] = factor_node(node.child[c], a, numeric);
    }
  }
  const int f = static_cast<int>(node.front.size()), s = node.separator, b = f - s;
  double* panel = numeric.storage.data() + node.panel;
  std::fill(panel, panel + static_cast<std::size_t>(f) * s, 0.0);
  std::vector<double> update = numeric.zeroed(static_cast<std::size_t>(b) * b);
  for (const Entry& e : node.entries) {
    const double v = e.kind == Entry::diagonal     ? a.diagonal[e.pixel]
                     : e.kind == Entry::horizontal ? -a.horizontal[e.pixel]
                                                   : -a.vertical[e.pixel];
    panel[e.row + static_cast<std::size_t>(e.col) * f] += v;
  }
  for (int c = 0; c < 2; ++c) {
    if (node.child[c] < 0) continue;
    // Extend-add: column j of the child's update lands in the column of
    // its pixel here, its rows in runs of consecutive positions.
    const Node& child = nodes_[node.child[c]];
    const std::vector<double>& u = child_update[c];
    const int cb = static_cast<int>(child.to_parent.size());
    for (int j = 0; j < cb; ++j) {
      const int mj = child.to_parent[j];
      const double* uj = u.data() + static_cast<std::size_t>(j) * cb;
      double* col = mj < s ? panel + static_cast<std::size_t>(mj) * f
                           : update.data() + static_cast<std::size_t>(mj - s) * b - s;
      for (const Run& run : child.runs) {
        const int first = std::max(run.first, j), last = run.first + run.length;
        if (first >= last) continue;
        const double* src = uj + first;
        double* dst = col + run.target + (first - run.first);
        for (int i = 0; i < last - first; ++i) dst[i] += src[i];
      }
    }
  }
  for (auto& u : child_update) numeric.recycle(std::move(u));
  factor_front(panel, f, s, update.data(), b);
  return update;
}

void GridCholesky::solve_in_place(const double* storage, double* y) const {
  std::vector<double> z;
  const auto gather = [&](const Node& node) {
    z.resize(node.front.size());
    for (std::size_t i = 0; i < node.front.size(); ++i) z[i] = y[node.front[i]];
  };
  // Forward: L y' = y, children before parents; the boundary values carry
  // each node's contribution up.
  for (const Node& node : nodes_) {
    gather(node);
    forward_front(storage + node.panel, static_cast<int>(node.front.size()), node.separator, z.data());
    for (std::size_t i = 0; i < node.front.size(); ++i) y[node.front[i]] = z[i];
  }
  // Backward: Lᵀ x = y', parents before children.
  for (auto node = nodes_.rbegin(); node != nodes_.rend(); ++node) {
    gather(*node);
    backward_front(storage + node->panel, static_cast<int>(node->front.size()), node->separator, z.data());
    for (int i = 0; i < node->separator; ++i) y[node->front[i]] = z[i];
  }
}

void GridCholesky::solve(const GridWeights& weights, std::span<const double> data, std::span<const double* const> rhs,
                         std::span<double* const> out) const {
  check_grid_weights(weights, data);
  if (weights.rows != rows_ || weights.cols != cols_ || rhs.size() != out.size()) {
    throw std::invalid_argument("GridCholesky::solve: size mismatch");
  }
  const std::size_t n = static_cast<std::size_t>(rows_) * cols_;
  std::vector<double> diagonal(n);
  for (int y = 0; y < rows_; ++y) {
    for (int x = 0; x < cols_; ++x) diagonal[static_cast<std::size_t>(y) * cols_ + x] = grid_diagonal(weights, data, y, x);
  }
  const Coefficients a{diagonal.data(), weights.horizontal.data(), weights.vertical.data()};
  std::unique_ptr<Numeric> numeric = acquire();
  numeric->recycle(factor_node(static_cast<int>(nodes_.size()) - 1, a, *numeric));
  // The right-hand sides are independent: solve them side by side.
  tbb::parallel_for(std::size_t{0}, rhs.size(), [&](std::size_t j) {
    if (out[j] != rhs[j]) std::memcpy(out[j], rhs[j], n * sizeof(double));
    solve_in_place(numeric->storage.data(), out[j]);
  });
  release(std::move(numeric));
}

}  // namespace opforge
