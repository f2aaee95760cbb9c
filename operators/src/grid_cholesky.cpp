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
#include <tbb/task_arena.h>
#include <xmmintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <type_traits>

#include "blas.hpp"
#include "opforge/operators/grid_solver.hpp"

namespace opforge {
namespace {

constexpr int kLeafPixels = 16;           // regions this small are not split
constexpr int kBlasFront = 64;            // fronts at least this large go to BLAS; smaller ones run inline
constexpr std::size_t kParallelPixels = 1 << 14;  // subtrees at least this large run their halves in parallel
constexpr int kScatterBoundary = 64;  // children with boundaries this small extend-add entry by entry, not by runs

// One coefficient of D + L_a assembled into a node's front: front position
// (row ≥ col, col always in the separator) and where its value comes from.
struct Entry {
  int row, col;
  int pixel;
  enum Kind : int { diagonal, horizontal, vertical } kind;
};

// The factor's storage: one block of count doubles, given to the kernel's
// transparent huge pages where it allows them. A fresh factor at 1 MP is
// ~530 MB; faulting it in 4 KiB pages cost more than half a second on the
// virtual machines measured, in 2 MiB pages a fifth of that.
class FactorStorage {
 public:
  explicit FactorStorage(std::size_t count) : bytes_(std::max<std::size_t>(count, 1) * sizeof(double)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes_, MADV_HUGEPAGE);  // advice only: ignored where THP is off
    data_ = p;
  }
  ~FactorStorage() { munmap(data_, bytes_); }
  FactorStorage(const FactorStorage&) = delete;
  FactorStorage& operator=(const FactorStorage&) = delete;
  // The factor's entries: double, or float for solve_refined's factor (the
  // first half of the block then).
  template <class T>
  T* data() const {
    return static_cast<T*>(data_);
  }

 private:
  std::size_t bytes_;
  void* data_ = nullptr;
};

struct NotPositiveDefinite : std::runtime_error {
  NotPositiveDefinite() : std::runtime_error("grid system is not positive definite") {}
};

// x[i] −= (l0[i]·a0 + l1[i]·a1) + (l2[i]·a2 + l3[i]·a3) for i in [0, n):
// four columns' contributions at a time, so x is loaded and stored once
// per four.
template <class T>
inline void subtract_four(T* x, const T* l0, const T* l1, const T* l2, const T* l3, T a0, T a1, T a2, T a3, int n) {
  for (int i = 0; i < n; ++i) x[i] -= (l0[i] * a0 + l1[i] * a1) + (l2[i] * a2 + l3[i] * a3);
}

// x[i] −= Σ_k c_k[i]·c_k[row] over the columns c_k = columns + k·stride,
// k in [0, count): the contributions of `count` factored columns to the
// entries [row, row + n) of another.
template <class T>
inline void subtract_columns(T* x, const T* columns, std::size_t stride, int count, int row, int n) {
  int k = 0;
  for (; k + 4 <= count; k += 4) {
    const T* c = columns + k * stride;
    subtract_four(x, c + row, c + stride + row, c + 2 * stride + row, c + 3 * stride + row, c[row], c[stride + row],
                  c[2 * stride + row], c[3 * stride + row], n);
  }
  for (; k < count; ++k) {
    const T* c = columns + k * stride;
    const T a = c[row];
    for (int i = 0; i < n; ++i) x[i] -= c[row + i] * a;
  }
}

// The small fronts' factorisation, inline: left-looking over the f×s panel
// (each column takes the contributions of the ones before it, four at a
// time, then is scaled by its pivot), then U −= L_BS·L_BSᵀ column by column.
template <class T>
void small_front(T* panel, int f, int s, T* update, int b) {
  for (int j = 0; j < s; ++j) {
    T* cj = panel + static_cast<std::size_t>(j) * f;
    subtract_columns(cj + j, panel, static_cast<std::size_t>(f), j, j, f - j);
    if (!(cj[j] > T(0))) throw NotPositiveDefinite();
    const T d = std::sqrt(cj[j]);
    cj[j] = d;
    const T inv = T(1) / d;
    for (int i = j + 1; i < f; ++i) cj[i] *= inv;
  }
  for (int j = 0; j < b; ++j) {
    subtract_columns(update + static_cast<std::size_t>(j) * b + j, panel + s, static_cast<std::size_t>(f), s, j, b - j);
  }
}

// Factors the separator columns of the front [P | U]: P is the f×s panel
// (column-major, leading dimension f) holding the separator columns, U the
// b×b lower triangle of the boundary block (f = s + b). On return P holds
// [L_SS; L_BS] and U the Schur complement U − L_BS·L_BSᵀ.
template <class T>
void factor_front(T* panel, int f, int s, T* update, int b) {
  if (f >= kBlasFront) {
    int info = 0;
    blas::potrf("L", s, panel, f, info);
    if (info != 0) throw NotPositiveDefinite();
    if (b > 0) {
      blas::trsm("R", "L", "T", "N", b, s, T(1), panel, f, panel + s, f);
      blas::syrk("L", "N", b, s, T(-1), panel + s, f, T(1), update, b);
    }
    return;
  }
  small_front(panel, f, s, update, b);
}

// The forward step of the front z = [z_S; z_B] (f = s + b values):
// z_S ← L_SS⁻¹ z_S, z_B ← z_B − L_BS z_S.
template <class T>
void forward_front(const T* panel, int f, int s, T* z) {
  const int b = f - s;
  if (f >= kBlasFront) {
    blas::trsv("L", "N", s, panel, f, z);
    if (b > 0) blas::gemv("N", b, s, T(-1), panel + s, f, z, T(1), z + s);
    return;
  }
  for (int k = 0; k < s; ++k) {
    const T* ck = panel + static_cast<std::size_t>(k) * f;
    const T zk = z[k] / ck[k];
    z[k] = zk;
    for (int i = k + 1; i < f; ++i) z[i] -= ck[i] * zk;
  }
}

// Σ a[i]·b[i] in eight interleaved partial sums: the backward steps of the
// small fronts are chains of these dot products, and one running sum made
// each a chain of dependent additions.
template <class T>
T dot(const T* a, const T* b, int n) {
  T partial[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) partial[0] += a[i] * b[i];
  return ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

// The backward step, z_B already solved: z_S ← L_SS⁻ᵀ (z_S − L_BSᵀ z_B).
template <class T>
void backward_front(const T* panel, int f, int s, T* z) {
  const int b = f - s;
  if (f >= kBlasFront) {
    if (b > 0) blas::gemv("T", b, s, T(-1), panel + s, f, z + s, T(1), z);
    blas::trsv("L", "T", s, panel, f, z);
    return;
  }
  for (int k = s - 1; k >= 0; --k) {
    const T* ck = panel + static_cast<std::size_t>(k) * f;
    z[k] = (z[k] - dot(ck + k + 1, z + k + 1, f - k - 1)) / ck[k];
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

// A node's update matrix: b×b, column-major. Only its lower triangle is ever
// written or read (the extend-add, the small-front kernel and dsyrk 'L'), so
// only that is zeroed.
struct GridCholesky::UpdateMatrix {
  // Raw storage (bytes implicitly create the float or double objects it
  // holds), `capacity` doubles' worth.
  std::unique_ptr<std::byte[]> values;
  std::size_t capacity = 0;
  template <class T>
  T* data() const {
    return reinterpret_cast<T*>(values.get());
  }
};

namespace {

// Small update matrices (most nodes: a 500x375 grid has ~15k fronts under 64
// pixels) come from a per-thread free list by power-of-two size class
// instead of malloc, which cost ~4 % of a VOC-size WLS pair. A buffer may
// be freed on another thread than the one that took it (the halves of a
// region run in parallel); it then joins that thread's list.
class SmallUpdatePool {
 public:
  static constexpr std::size_t kMaxCount = std::size_t{1} << 13;  // doubles (64 KiB)

  // A buffer of at least `count` doubles; `capacity` receives its size.
  std::unique_ptr<std::byte[]> take(std::size_t count, std::size_t& capacity) {
    const int c = size_class(count);
    auto& list = free_[c];
    capacity = std::size_t{1} << c;
    if (list.empty()) return std::make_unique_for_overwrite<std::byte[]>(capacity * sizeof(double));
    std::unique_ptr<std::byte[]> buffer = std::move(list.back());
    list.pop_back();
    return buffer;
  }
  void give(std::unique_ptr<std::byte[]>&& buffer, std::size_t capacity) {
    auto& list = free_[size_class(capacity)];
    if (list.size() < kKeepPerClass) list.push_back(std::move(buffer));
  }

 private:
  static constexpr std::size_t kKeepPerClass = 32;
  static int size_class(std::size_t count) { return static_cast<int>(std::bit_width(count - 1)); }
  std::array<std::vector<std::unique_ptr<std::byte[]>>, 14> free_;
};

thread_local SmallUpdatePool small_updates;

// Flush-to-zero and denormals-are-zero while factorising in float: the Schur
// complements' far entries decay into float's subnormal range, where every
// operation on them takes a microcode assist.
class FloatMode {
 public:
  explicit FloatMode(bool on) : on_(on) {
    if (on_) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040);
    }
  }
  ~FloatMode() {
    if (on_) _mm_setcsr(saved_);
  }
  FloatMode(const FloatMode&) = delete;
  FloatMode& operator=(const FloatMode&) = delete;

 private:
  bool on_;
  unsigned saved_ = 0;
};

}  // namespace

struct GridCholesky::Numeric {
  explicit Numeric(std::size_t count) : storage(count) {}
  FactorStorage storage;

  // Large update matrices are recycled: from the heap each would be a fresh
  // mapping, zeroed by the kernel page by page (an eighth of a 1 MP
  // factorisation's time, measured); a node's children finish before it
  // needs its own, so a few buffers serve the whole tree.
  static constexpr std::size_t kRecycled = std::size_t{1} << 16;  // doubles (512 KiB) and up
  std::mutex spare_mutex;
  std::vector<UpdateMatrix> spare;

  // A b×b update matrix of T with its lower triangle zeroed, followed by
  // `extra` zeroed values of T.
  template <class T>
  UpdateMatrix take_update(int b, std::size_t extra) {
    const std::size_t values = static_cast<std::size_t>(b) * b + extra;
    const std::size_t count = (values * sizeof(T) + sizeof(double) - 1) / sizeof(double);
    UpdateMatrix m;
    if (count == 0) return m;
    if (count <= SmallUpdatePool::kMaxCount) {
      m.values = small_updates.take(count, m.capacity);
    } else if (count >= kRecycled) {
      std::lock_guard lock(spare_mutex);
      auto best = spare.end();
      for (auto it = spare.begin(); it != spare.end(); ++it) {
        if (it->capacity >= count && (best == spare.end() || it->capacity < best->capacity)) best = it;
      }
      if (best != spare.end()) {
        m = std::move(*best);
        spare.erase(best);
      }
    }
    if (!m.values) m = {std::make_unique_for_overwrite<std::byte[]>(count * sizeof(double)), count};
    for (int j = 0; j < b; ++j) {
      T* column = m.data<T>() + static_cast<std::size_t>(j) * b;
      std::fill(column + j, column + b, T(0));
    }
    std::fill_n(m.data<T>() + static_cast<std::size_t>(b) * b, extra, T(0));
    return m;
  }
  void give_back(UpdateMatrix&& m) {
    if (!m.values) return;
    if (m.capacity <= SmallUpdatePool::kMaxCount) {
      small_updates.give(std::move(m.values), m.capacity);
      return;
    }
    if (m.capacity < kRecycled) return;
    std::lock_guard lock(spare_mutex);
    spare.push_back(std::move(m));
    if (spare.size() > 16) {  // keep the largest
      spare.erase(std::min_element(spare.begin(), spare.end(),
                                   [](const auto& x, const auto& y) { return x.capacity < y.capacity; }));
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

template <class T>
GridCholesky::UpdateMatrix GridCholesky::factor_node(int id, const Coefficients& a, Numeric& numeric,
                                                     std::span<T* const> forward) const {
  const Node& node = nodes_[id];
  UpdateMatrix child_update[2];
  if (node.child[0] >= 0 && node.child[1] >= 0 && node.pixels >= kParallelPixels) {
    tbb::parallel_invoke(
        [&] {
          const FloatMode mode(std::is_same_v<T, float>);
          child_update[0] = factor_node<T>(node.child[0], a, numeric, forward);
        },
        [&] {
          const FloatMode mode(std::is_same_v<T, float>);
          child_update[1] = factor_node<T>(node.child[1], a, numeric, forward);
        });
  } else {
    for (int c = 0; c < 2; ++c) {
      if (node.child[c] >= 0) child_update[c] = factor_node<T>(node.child[c], a, numeric, forward);
    }
  }
  const int f = static_cast<int>(node.front.size()), s = node.separator, b = f - s;
  T* panel = numeric.storage.data<T>() + node.panel;
  // Only the lower triangle of the separator block is used (here, by
  // LAPACK's 'L' routines and by the solve).
  for (int k = 0; k < s; ++k) {
    T* column = panel + static_cast<std::size_t>(k) * f;
    std::fill(column + k, column + f, T(0));
  }
  // After the matrix, the front of each vector being forward-solved: its
  // separator values, then (passed up) what this subtree subtracts from its
  // boundary values.
  UpdateMatrix update = numeric.take_update<T>(b, static_cast<std::size_t>(f) * forward.size());
  T* const fronts = update.data<T>() + static_cast<std::size_t>(b) * b;
  for (std::size_t r = 0; r < forward.size(); ++r) {
    for (int i = 0; i < s; ++i) fronts[r * f + i] = forward[r][node.front[i]];
  }
  for (const Entry& e : node.entries) {
    const double v = e.kind == Entry::diagonal     ? a.diagonal[e.pixel]
                     : e.kind == Entry::horizontal ? -a.horizontal[e.pixel]
                                                   : -a.vertical[e.pixel];
    panel[e.row + static_cast<std::size_t>(e.col) * f] += static_cast<T>(v);
  }
  for (int c = 0; c < 2; ++c) {
    if (node.child[c] < 0) continue;
    // Extend-add: column j of the child's update lands in the column of
    // its pixel here, its rows in runs of consecutive positions.
    const Node& child = nodes_[node.child[c]];
    const T* u = child_update[c].data<T>();
    const int cb = static_cast<int>(child.to_parent.size());
    const int* to_parent = child.to_parent.data();
    std::size_t first_run = 0;  // the runs before it end above row j
    for (int j = 0; j < cb; ++j) {
      const int mj = to_parent[j];
      const T* uj = u + static_cast<std::size_t>(j) * cb;
      T* col = mj < s ? panel + static_cast<std::size_t>(mj) * f
                      : update.data<T>() + static_cast<std::size_t>(mj - s) * b - s;
      if (cb <= kScatterBoundary) {
        for (int i = j; i < cb; ++i) col[to_parent[i]] += uj[i];
        continue;
      }
      while (child.runs[first_run].first + child.runs[first_run].length <= j) ++first_run;
      for (std::size_t r = first_run; r < child.runs.size(); ++r) {
        const Run& run = child.runs[r];
        const int first = std::max(run.first, j), last = run.first + run.length;
        const T* src = uj + first;
        T* dst = col + run.target + (first - run.first);
        for (int i = 0; i < last - first; ++i) dst[i] += src[i];
      }
    }
  }
  for (int c = 0; c < 2 && !forward.empty(); ++c) {
    if (node.child[c] < 0) continue;
    const Node& child = nodes_[node.child[c]];
    const std::size_t cf = child.front.size(), cb = child.to_parent.size();
    for (std::size_t r = 0; r < forward.size(); ++r) {
      const T* from = child_update[c].data<T>() + cb * cb + r * cf + child.separator;
      for (std::size_t j = 0; j < cb; ++j) fronts[r * f + child.to_parent[j]] += from[j];
    }
  }
  for (auto& u : child_update) numeric.give_back(std::move(u));
  factor_front(panel, f, s, update.data<T>(), b);
  for (std::size_t r = 0; r < forward.size(); ++r) {
    forward_front(panel, f, s, fronts + r * f);
    for (int i = 0; i < s; ++i) forward[r][node.front[i]] = fronts[r * f + i];
  }
  return update;
}

template <class T>
void GridCholesky::solve_in_place(const T* storage, T* y) const {
  // Forward: L y' = y, children before parents; the boundary values carry
  // each node's contribution up.
  std::vector<T> z;
  for (const Node& node : nodes_) {
    z.resize(node.front.size());
    for (std::size_t i = 0; i < node.front.size(); ++i) z[i] = y[node.front[i]];
    forward_front(storage + node.panel, static_cast<int>(node.front.size()), node.separator, z.data());
    for (std::size_t i = 0; i < node.front.size(); ++i) y[node.front[i]] = z[i];
  }
  backward_in_place(storage, y);
}

template <class T>
void GridCholesky::backward_in_place(const T* storage, T* y) const {
  // Lᵀ x = y', parents before children.
  std::vector<T> z;
  for (auto node = nodes_.rbegin(); node != nodes_.rend(); ++node) {
    z.resize(node->front.size());
    for (std::size_t i = 0; i < node->front.size(); ++i) z[i] = y[node->front[i]];
    backward_front(storage + node->panel, static_cast<int>(node->front.size()), node->separator, z.data());
    for (int i = 0; i < node->separator; ++i) y[node->front[i]] = z[i];
  }
}

namespace {

// r = b − A x for A = D + L_a; returns Σ r², summed in a fixed order of row
// blocks so that it does not depend on the schedule.
double residual(const GridWeights& w, std::span<const double> data, const double* b, const double* x, double* r) {
  grid_multiply(w, data, x, r);
  const std::size_t n = static_cast<std::size_t>(w.rows) * w.cols;
  constexpr std::size_t kBlock = std::size_t{1} << 14;
  std::vector<double> block_sums((n + kBlock - 1) / kBlock, 0.0);
  tbb::parallel_for(std::size_t{0}, block_sums.size(), [&](std::size_t block) {
    double sum = 0;
    for (std::size_t i = block * kBlock; i < std::min(n, (block + 1) * kBlock); ++i) {
      r[i] = b[i] - r[i];
      sum += r[i] * r[i];
    }
    block_sums[block] = sum;
  });
  double total = 0;
  for (double s : block_sums) total += s;
  return total;
}

std::vector<double> diagonal_of(const GridWeights& weights, std::span<const double> data) {
  std::vector<double> diagonal(weights.horizontal.size());
  for (int y = 0; y < weights.rows; ++y) {
    for (int x = 0; x < weights.cols; ++x) {
      diagonal[static_cast<std::size_t>(y) * weights.cols + x] = grid_diagonal(weights, data, y, x);
    }
  }
  return diagonal;
}

}  // namespace

void GridCholesky::check_system(const GridWeights& weights, std::span<const double> data, std::size_t rhs_count,
                                std::size_t out_count) const {
  check_grid_weights(weights, data);
  if (weights.rows != rows_ || weights.cols != cols_ || rhs_count != out_count) {
    throw std::invalid_argument("GridCholesky::solve: size mismatch");
  }
}

void GridCholesky::solve(const GridWeights& weights, std::span<const double> data, std::span<const double* const> rhs,
                         std::span<double* const> out) const {
  check_system(weights, data, rhs.size(), out.size());
  const std::vector<double> diagonal = diagonal_of(weights, data);
  solve_in_double(weights, diagonal, rhs, out);
}

void GridCholesky::solve_in_double(const GridWeights& weights, const std::vector<double>& diagonal,
                                   std::span<const double* const> rhs, std::span<double* const> out) const {
  const std::size_t n = diagonal.size();
  const Coefficients a{diagonal.data(), weights.horizontal.data(), weights.vertical.data()};
  std::unique_ptr<Numeric> numeric = acquire();
  numeric->give_back(factor_node<double>(static_cast<int>(nodes_.size()) - 1, a, *numeric, {}));
  // The right-hand sides are independent: solve them side by side.
  tbb::parallel_for(std::size_t{0}, rhs.size(), [&](std::size_t j) {
    if (out[j] != rhs[j]) std::memcpy(out[j], rhs[j], n * sizeof(double));
    solve_in_place(numeric->storage.data<double>(), out[j]);
  });
  release(std::move(numeric));
}

RefinedSolveReport GridCholesky::solve_refined(const GridWeights& weights, std::span<const double> data,
                                               std::span<const double* const> rhs, std::span<double* const> out,
                                               const RefinementGoal& goal) const {
  check_system(weights, data, rhs.size(), out.size());
  if (!(goal.residual_rms > 0) || goal.max_refinements < 0) {
    throw std::invalid_argument("GridCholesky::solve_refined: residual_rms must be > 0 and max_refinements >= 0");
  }
  const std::vector<double> diagonal = diagonal_of(weights, data);
  const std::size_t n = diagonal.size();
  const Coefficients a{diagonal.data(), weights.horizontal.data(), weights.vertical.data()};
  std::unique_ptr<Numeric> numeric = acquire();
  // The first solve's forward step runs inside the factorisation, on each
  // front while it is in cache: one pass over the factor fewer.
  std::vector<std::vector<float>> first(rhs.size());
  std::vector<float*> first_data(rhs.size());
  for (std::size_t j = 0; j < rhs.size(); ++j) {
    first[j].assign(rhs[j], rhs[j] + n);
    first_data[j] = first[j].data();
  }
  // Isolated, so that no other work (another pair's double-precision
  // operator, in datagen) is picked up by a thread while it flushes
  // subnormals to zero.
  bool float_factor_failed = false;
  tbb::this_task_arena::isolate([&] {
    const FloatMode mode(true);
    try {
      numeric->give_back(factor_node<float>(static_cast<int>(nodes_.size()) - 1, a, *numeric, first_data));
    } catch (const NotPositiveDefinite&) {
      // In float, a pivot of a system whose affinities exceed ~1e7 times its
      // data term can round to ≤ 0; whether A itself is positive definite,
      // the double factorisation decides.
      float_factor_failed = true;
    }
  });
  if (float_factor_failed) {
    release(std::move(numeric));
    solve_in_double(weights, diagonal, rhs, out);
    return {.refinements = 0, .refactored_in_double = true, .residual_rms = 0};
  }
  const float* factor = numeric->storage.data<float>();
  const double max_square_sum = goal.residual_rms * goal.residual_rms * static_cast<double>(n);
  std::vector<int> refinements(rhs.size(), 0);
  std::vector<double> square_sums(rhs.size(), 0.0);
  // The refinement reads b after x is written: a right-hand side solved in
  // place is copied first.
  std::vector<std::vector<double>> copies(rhs.size());
  std::vector<const double*> b(rhs.begin(), rhs.end());
  tbb::parallel_for(std::size_t{0}, rhs.size(), [&](std::size_t j) {
    if (out[j] == rhs[j]) {
      copies[j].assign(rhs[j], rhs[j] + n);
      b[j] = copies[j].data();
    }
    std::vector<double> r(n);
    double* x = out[j];
    std::vector<float>& d = first[j];
    backward_in_place(factor, d.data());
    for (std::size_t i = 0; i < n; ++i) x[i] = d[i];
    for (int step = 0;; ++step) {
      square_sums[j] = residual(weights, data, b[j], x, r.data());
      refinements[j] = step;
      if (square_sums[j] <= max_square_sum || step == goal.max_refinements) break;
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<float>(r[i]);
      solve_in_place(factor, d.data());
      for (std::size_t i = 0; i < n; ++i) x[i] += d[i];
    }
  });
  release(std::move(numeric));
  RefinedSolveReport report;
  std::vector<const double*> again_rhs;
  std::vector<double*> again_out;
  for (std::size_t j = 0; j < rhs.size(); ++j) {
    report.refinements = std::max(report.refinements, refinements[j]);
    if (square_sums[j] <= max_square_sum) {
      report.residual_rms = std::max(report.residual_rms, std::sqrt(square_sums[j] / static_cast<double>(n)));
    } else {
      again_rhs.push_back(b[j]);
      again_out.push_back(out[j]);
    }
  }
  if (!again_rhs.empty()) {
    // Not there in max_refinements steps: the float factor is too far from A.
    solve_in_double(weights, diagonal, again_rhs, again_out);
    report.refactored_in_double = true;
  }
  return report;
}

}  // namespace opforge
