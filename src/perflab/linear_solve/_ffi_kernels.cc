// XLA FFI kernels of perflab.linear_solve's "ffi" variant: a linear solve and its JVP
// x' = A^-1 (b' - A' x) in one custom call, the factorisation shared by primal and tangent.
//
// LAPACK/BLAS come from scipy (scipy.linalg.cython_lapack / cython_blas): their function pointers
// are read from the PyCapsules in `__pyx_capi__` at import time (`_ffi.py`) and handed over once
// through `set_lapack`, so nothing links against a BLAS here.
//
// Layout: JAX arrays are row-major, LAPACK column-major. A row-major (n, n) matrix is the
// column-major A^T, so LU factorises A^T and solves with trans = 'T'; Cholesky needs no care
// (A is symmetric). A tridiagonal operator is three bands, the same in either order.
//
// Batching (jax.vmap with vmap_method="expand_dims"): every buffer carries the same number of
// leading batch dimensions, of size 1 where that input is not batched; the kernel broadcasts them
// and loops over the batch inside one call. When consecutive systems share the operator (e.g.
// jax.jacfwd over b, or vmap over b only) the factorisation is reused, and when they share b too
// the primal solution is copied instead of solved again.
// Distinct operators: a large batch is split over XLA's intra-op thread pool (`run_chunks`), and
// tridiagonal JVPs go four systems at a time with their loops interleaved (`TridiagonalGroup`).
//
// Singular operators (an exactly zero LU/gttrf pivot, or a non-SPD matrix for Cholesky:
// LAPACK info > 0) give NaN for that system and, when the caller asks for it (an optional last
// output), ok = 0; the Python side turns that into equinox's error (or NaN, with
// EQX_ON_ERROR=nan), as the other variants do.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ------------------------------------------------------------------ LAPACK / BLAS pointers

template <typename T>
struct Lapack {
  using getrf_t = void (*)(int*, int*, T*, int*, int*, int*);
  using getrs_t = void (*)(char*, int*, int*, T*, int*, int*, T*, int*, int*);
  using potrf_t = void (*)(char*, int*, T*, int*, int*);
  using potrs_t = void (*)(char*, int*, int*, T*, int*, T*, int*, int*);
  using gttrf_t = void (*)(int*, T*, T*, T*, T*, int*, int*);
  using gttrs_t = void (*)(char*, int*, int*, T*, T*, T*, T*, int*, T*, int*, int*);
  using gemv_t = void (*)(char*, int*, int*, T*, T*, int*, T*, int*, T*, T*, int*);
  using trsv_t = void (*)(char*, char*, char*, int*, T*, int*, T*, int*);
  static getrf_t getrf;
  static getrs_t getrs;
  static potrf_t potrf;
  static potrs_t potrs;
  static gttrf_t gttrf;
  static gttrs_t gttrs;
  static gemv_t gemv;
  static trsv_t trsv;
  static bool ready() { return getrf && getrs && potrf && potrs && gttrf && gttrs && gemv && trsv; }
};
template <typename T> typename Lapack<T>::getrf_t Lapack<T>::getrf = nullptr;
template <typename T> typename Lapack<T>::getrs_t Lapack<T>::getrs = nullptr;
template <typename T> typename Lapack<T>::potrf_t Lapack<T>::potrf = nullptr;
template <typename T> typename Lapack<T>::potrs_t Lapack<T>::potrs = nullptr;
template <typename T> typename Lapack<T>::gttrf_t Lapack<T>::gttrf = nullptr;
template <typename T> typename Lapack<T>::gttrs_t Lapack<T>::gttrs = nullptr;
template <typename T> typename Lapack<T>::gemv_t Lapack<T>::gemv = nullptr;
template <typename T> typename Lapack<T>::trsv_t Lapack<T>::trsv = nullptr;

// ------------------------------------------------------------------ solvers

// Each solver: the number of operator buffers, the core rank of each, `factor` (into a
// workspace; returns false when singular), `solve` (in place, nrhs columns of length n,
// column-major) and `sub_matvec` (r -= A' x for a tangent operator).

template <typename T>
struct Dense {
  std::vector<T> a;
  std::vector<int> ipiv;
  int n = 0;
  bool cholesky = false;

  static constexpr int kOperatorBuffers = 1;
  static int core_rank(int) { return 2; }
  static int64_t core_size(int, int64_t n) { return n * n; }
  // Rough flops of one system's factorisation and solves, to decide whether to go parallel.
  static double cost(int64_t n) { return static_cast<double>(n) * n * n / 3 + 4.0 * n * n; }

  bool factor(const T* const* op, int n_) {
    n = n_;
    a.assign(op[0], op[0] + static_cast<size_t>(n) * n);
    int info = 0;
    if (cholesky) {
      char uplo = 'L';
      Lapack<T>::potrf(&uplo, &n, a.data(), &n, &info);
    } else {
      ipiv.resize(n);
      Lapack<T>::getrf(&n, &n, a.data(), &n, ipiv.data(), &info);
    }
    return info == 0;
  }

  void solve(T* rhs, int nrhs) {
    if (cholesky && nrhs == 1) {
      // One column: A = L L^T solved by two trsv. potrs goes through trsm, measurably slower for
      // one vector here (n = 200: JVP 0.16 -> 0.13 ms); for LU, getrs' trsm with trans = 'T' was
      // not (within noise), so it stays.
      int one = 1;
      char lo = 'L', no = 'N', tr = 'T';
      Lapack<T>::trsv(&lo, &no, &no, &n, a.data(), &n, rhs, &one);
      Lapack<T>::trsv(&lo, &tr, &no, &n, a.data(), &n, rhs, &one);
      return;
    }
    int info = 0;
    if (cholesky) {
      char uplo = 'L';
      Lapack<T>::potrs(&uplo, &n, &nrhs, a.data(), &n, rhs, &n, &info);
    } else {
      char trans = 'T';  // the factors are of A^T (row-major A read as column-major)
      Lapack<T>::getrs(&trans, &n, &nrhs, a.data(), &n, ipiv.data(), rhs, &n, &info);
    }
  }

  void sub_matvec(const T* const* t_op, const T* x, T* r) {
    // r <- r - A' x: row-major A' is column-major A'^T, so gemv with 'T' computes A' x.
    char trans = 'T';
    T alpha = -1, beta = 1;
    int one = 1;
    Lapack<T>::gemv(&trans, &n, &n, &alpha, const_cast<T*>(t_op[0]), &n, const_cast<T*>(x), &one, &beta, r, &one);
  }
};

template <typename T>
struct Tridiagonal {
  std::vector<T> dl, d, du, du2, inv_d;
  std::vector<int> ipiv;
  int n = 0;

  static constexpr int kOperatorBuffers = 3;  // lower (n-1), diag (n), upper (n-1)
  static int core_rank(int) { return 1; }
  static int64_t core_size(int k, int64_t n) { return k == 1 ? n : n - 1; }
  // Calibrated to the grouped batch path (`TridiagonalGroup`, ~0.5 us per system at n = 50 on
  // the 2-core VM): 200 systems of n = 50 stay on one thread, where the measured time was as
  // good as split over two and steadier (development timings, not recorded).
  static double cost(int64_t n) { return 8.0 * n; }

  bool factor(const T* const* op, int n_) {
    n = n_;
    dl.assign(op[0], op[0] + (n - 1));
    d.assign(op[1], op[1] + n);
    du.assign(op[2], op[2] + (n - 1));
    du2.resize(std::max(n - 2, 1));
    ipiv.resize(n);
    int info = 0;
    // gttrf: LU with partial pivoting of the bands (gtsv's algorithm, with the factors kept).
    Lapack<T>::gttrf(&n, dl.data(), d.data(), du.data(), du2.data(), ipiv.data(), &info);
    if (info != 0) return false;
    // The reciprocals of U's diagonal, once per factorisation: the substitutions below then
    // multiply instead of divide (gttrs divides in its back substitution, a chain of dependent
    // divisions per solve), the largest cost of a small solve.
    inv_d.resize(n);
    for (int i = 0; i < n; ++i) inv_d[i] = T(1) / d[i];
    return true;
  }

  void solve(T* rhs, int nrhs) {
    // gttrs (dgtts2, no transpose) with the stored reciprocals: the same factors and operations
    // order as LAPACK's, a multiplication by 1/d instead of the division by d.
    for (int c = 0; c < nrhs; ++c) {
      T* b = rhs + static_cast<size_t>(c) * n;
      for (int i = 0; i + 1 < n; ++i) {  // L: row interchanges and elimination
        if (ipiv[i] == i + 1) {          // 1-based: no interchange
          b[i + 1] -= dl[i] * b[i];
        } else {
          T temp = b[i];
          b[i] = b[i + 1];
          b[i + 1] = temp - dl[i] * b[i];
        }
      }
      b[n - 1] *= inv_d[n - 1];  // U: back substitution
      if (n > 1) b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) * inv_d[n - 2];
      for (int i = n - 3; i >= 0; --i) b[i] = (b[i] - du[i] * b[i + 1] - du2[i] * b[i + 2]) * inv_d[i];
    }
  }

  void sub_matvec(const T* const* t_op, const T* x, T* r) { sub_matvec(t_op, x, r, n); }

  // r <- r - A' x for the bands t_op = (lower, diag, upper) of A'.
  static void sub_matvec(const T* const* t_op, const T* x, T* r, int n) {
    const T* lo = t_op[0];
    const T* di = t_op[1];
    const T* up = t_op[2];
    for (int i = 0; i < n; ++i) r[i] -= di[i] * x[i];
    for (int i = 1; i < n; ++i) r[i] -= lo[i - 1] * x[i - 1];
    for (int i = 0; i + 1 < n; ++i) r[i] -= up[i] * x[i + 1];
  }
};

// G tridiagonal JVPs of distinct operators with their loops interleaved. One system's
// factorisation and substitutions are chains of dependent operations (a division or a
// multiply-subtract per row), so a lone system leaves most of the core idle; G independent
// chains side by side fill it. The arithmetic per system is exactly gttrf's (partial pivoting
// of the bands, the same operations in the same order) and `Tridiagonal::solve`'s, so every
// system's result is the one the one-at-a-time path gives. Arrays are interleaved [row][g].
template <typename T, int G>
struct TridiagonalGroup {
  std::vector<T> dl, d, du, du2, inv, r;
  std::vector<unsigned char> swap;
  int n = 0;

  void resize(int n_) {
    n = n_;
    for (auto* v : {&dl, &d, &du, &du2, &inv, &r}) v->assign(static_cast<size_t>(n) * G, T(0));
    swap.assign(static_cast<size_t>(n) * G, 0);
  }

  // lo/di/up[g]: system g's bands. Returns per system whether U has no zero on its diagonal.
  void factor(const T* const* lo, const T* const* di, const T* const* up, bool* ok) {
    for (int g = 0; g < G; ++g) {
      for (int i = 0; i + 1 < n; ++i) dl[i * G + g] = lo[g][i], du[i * G + g] = up[g][i];
      for (int i = 0; i < n; ++i) d[i * G + g] = di[g][i];
    }
    std::fill(du2.begin(), du2.end(), T(0));
    std::fill(swap.begin(), swap.end(), 0);
    for (int i = 0; i + 1 < n; ++i) {
      for (int g = 0; g < G; ++g) {
        const int a = i * G + g, b = a + G;
        if (std::abs(d[a]) >= std::abs(dl[a])) {
          if (d[a] != T(0)) {
            T fact = dl[a] / d[a];
            dl[a] = fact;
            d[b] -= fact * du[a];
          }
        } else {
          T fact = d[a] / dl[a];
          d[a] = dl[a];
          dl[a] = fact;
          T temp = du[a];
          du[a] = d[b];
          d[b] = temp - fact * d[b];
          if (i + 2 < n) {
            du2[a] = du[b];
            du[b] = -fact * du[b];
          }
          swap[a] = 1;
        }
      }
    }
    for (int g = 0; g < G; ++g) ok[g] = true;
    for (int i = 0; i < n; ++i) {
      for (int g = 0; g < G; ++g) {
        ok[g] = ok[g] && d[i * G + g] != T(0);
        inv[i * G + g] = T(1) / d[i * G + g];
      }
    }
  }

  // Solve in place for the interleaved right-hand sides in `r`.
  void solve() {
    for (int i = 0; i + 1 < n; ++i) {
      for (int g = 0; g < G; ++g) {
        const int a = i * G + g, b = a + G;
        if (!swap[a]) {
          r[b] -= dl[a] * r[a];
        } else {
          T temp = r[a];
          r[a] = r[b];
          r[b] = temp - dl[a] * r[a];
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      const int last = (n - 1) * G + g;
      r[last] *= inv[last];
      if (n > 1) r[last - G] = (r[last - G] - du[last - G] * r[last]) * inv[last - G];
    }
    for (int i = n - 3; i >= 0; --i) {
      for (int g = 0; g < G; ++g) {
        const int a = i * G + g;
        r[a] = (r[a] - du[a] * r[a + G] - du2[a] * r[a + 2 * G]) * inv[a];
      }
    }
  }
};

// ------------------------------------------------------------------ batching

// Broadcast strides of one input over the output's batch dimensions (in units of one system).
struct Broadcast {
  std::vector<int64_t> strides;
};

ffi::Error broadcast_of(const ffi::AnyBuffer& buf, int core_rank, int64_t core_size,
                        const std::vector<int64_t>& batch, int operand, Broadcast& b) {
  auto dims = buf.dimensions();
  int rank = static_cast<int>(dims.size());
  int lead = rank - core_rank;
  int out_rank = static_cast<int>(batch.size());
  if (lead < 0 || lead > out_rank) {
    return ffi::Error::InvalidArgument("perflab ffi: bad rank of operand " + std::to_string(operand));
  }
  b.strides.assign(out_rank, 0);
  int64_t stride = core_size;
  // Right-aligned, numpy style; a size-1 dimension broadcasts (stride 0).
  for (int k = 1; k <= lead; ++k) {
    int64_t size = dims[lead - k];
    int64_t out_size = batch[out_rank - k];
    if (size != 1 && size != out_size) {
      return ffi::Error::InvalidArgument("perflab ffi: batch dimension mismatch in operand " +
                                        std::to_string(operand));
    }
    b.strides[out_rank - k] = size == 1 ? 0 : stride;
    stride *= size;
  }
  return ffi::Error::Success();
}

int64_t offset_of(const Broadcast& b, const std::vector<int64_t>& index) {
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) off += index[d] * b.strides[d];
  return off;
}

std::vector<int64_t> index_of(int64_t s, const std::vector<int64_t>& batch) {
  std::vector<int64_t> index(batch.size(), 0);
  for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
    index[d] = s % batch[d];
    s /= batch[d];
  }
  return index;
}

// A batch is split over threads only above this many (estimated) flops: a handoff to another
// thread costs some microseconds.
constexpr double kParallelMinWork = 2e5;
constexpr double kChunkWork = 2e4;

// Run process(begin, end) over [0, total) in chunks, on the calling thread and on helpers
// scheduled on XLA's intra-op thread pool. Chunks are claimed from a shared counter, so the
// caller never waits for a helper that has not started (a busy pool, or the caller itself
// being the pool's only thread): it claims the remaining chunks itself and waits only for the
// chunks already claimed. A helper that starts after the call returned finds no chunk left
// and touches only the shared state it owns.
std::atomic<int64_t> chunked_calls_count{0};  // read by tests: the parallel path was taken

struct ChunkState {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

template <typename Process>
void run_chunks(ffi::ThreadPool& pool, int64_t total, double work, const Process& process) {
  // The pool may hold more threads than cores (one per host device): no more than the cores.
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = std::max<int64_t>(1, std::min({pool.num_threads(), cores, total}));
  chunked_calls_count.fetch_add(1);
  auto state = std::make_shared<ChunkState>();
  // Small chunks (about kChunkWork flops, a few microseconds): the threads finish within one
  // small chunk of each other, whenever the helper started.
  const int64_t chunks = std::clamp<int64_t>(static_cast<int64_t>(work / kChunkWork), threads, total);
  const Process* fn = &process;
  auto claim = [state, fn, total, chunks]() {
    for (;;) {
      int64_t c = state->next.fetch_add(1);
      if (c >= chunks) return;
      (*fn)(c * total / chunks, (c + 1) * total / chunks);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.Schedule(decltype(claim)(claim));
  claim();
  while (state->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

void next_index(std::vector<int64_t>& index, const std::vector<int64_t>& batch) {
  for (int d = static_cast<int>(index.size()) - 1; d >= 0; --d) {
    if (++index[d] < batch[d]) return;
    index[d] = 0;
  }
}

enum class Kind { kSolve, kJvp, kJvpVector };

template <typename T>
bool all_finite(const T* x, int n) {
  bool finite = true;
  for (int i = 0; i < n; ++i) finite &= std::isfinite(x[i]);
  return finite;
}

constexpr int kGroup = 4;
std::atomic<int64_t> grouped_systems_count{0};  // read by tests: systems solved by groups

// The tridiagonal JVPs of systems [begin, end) by groups of kGroup (`TridiagonalGroup`);
// returns the first system left for the one-at-a-time loop (fewer than kGroup remain).
template <typename T>
int64_t tridiagonal_jvp_groups(const std::vector<ffi::AnyBuffer>& in, const std::vector<Broadcast>& bc,
                               const std::vector<int64_t>& batch, int n, int64_t begin, int64_t end, T* x_out,
                               T* t_out, T* ok_out) {
  TridiagonalGroup<T, kGroup> group;
  group.resize(n);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<int64_t> index = index_of(begin, batch);
  auto at = [&](int buffer) { return in[buffer].template typed_data<T>() + offset_of(bc[buffer], index); };
  int64_t s = begin;
  for (; s + kGroup <= end; s += kGroup) {
    const T *lo[kGroup], *di[kGroup], *up[kGroup], *b[kGroup], *t_op[kGroup][3], *tb[kGroup];
    for (int g = 0; g < kGroup; ++g, next_index(index, batch)) {
      lo[g] = at(0), di[g] = at(1), up[g] = at(2), b[g] = at(3);
      t_op[g][0] = at(4), t_op[g][1] = at(5), t_op[g][2] = at(6), tb[g] = at(7);
    }
    bool ok[kGroup];
    group.factor(lo, di, up, ok);
    for (int g = 0; g < kGroup; ++g) {
      for (int i = 0; i < n; ++i) group.r[i * kGroup + g] = b[g][i];
    }
    group.solve();
    for (int g = 0; g < kGroup; ++g) {  // x, then the tangent right-hand side b' - A' x (in x')
      T* x = x_out + (s + g) * n;
      T* tx = t_out + (s + g) * n;
      for (int i = 0; i < n; ++i) x[i] = group.r[i * kGroup + g];
      std::copy(tb[g], tb[g] + n, tx);
      Tridiagonal<T>::sub_matvec(t_op[g], x, tx, n);
      for (int i = 0; i < n; ++i) group.r[i * kGroup + g] = tx[i];
    }
    group.solve();
    for (int g = 0; g < kGroup; ++g) {
      T* x = x_out + (s + g) * n;
      T* tx = t_out + (s + g) * n;
      for (int i = 0; i < n; ++i) tx[i] = group.r[i * kGroup + g];
      if (!ok[g]) {
        std::fill(x, x + n, nan);
        std::fill(tx, tx + n, nan);
      }
      if (ok_out) ok_out[s + g] = ok[g] && all_finite(x, n) ? 1 : 0;
    }
  }
  grouped_systems_count.fetch_add(s - begin);
  return s;
}

// Inputs, in order: the operator's buffers, b, [the operator tangent's buffers (kJvp)],
// [b' (kJvp, kJvpVector)]. Outputs: x, [x' (kJvp, kJvpVector)].
template <typename T, template <typename> class Solver>
ffi::Error run(Kind kind, bool cholesky, ffi::ThreadPool& pool, ffi::RemainingArgs& args,
               ffi::RemainingRets& rets) {
  constexpr int nop = Solver<T>::kOperatorBuffers;
  const int n_in = nop + 1 + (kind == Kind::kJvp ? nop + 1 : kind == Kind::kJvpVector ? 1 : 0);
  const int n_vec_out = kind == Kind::kSolve ? 1 : 2;
  // An optional last output, ok (batch shape, the operands' dtype): 1 where the system was
  // factorised and x is finite, else 0. It lets the caller check the solve with a
  // per-system flag instead of scanning x in XLA.
  const int n_out = static_cast<int>(rets.size());
  const bool with_ok = n_out == n_vec_out + 1;
  if (static_cast<int>(args.size()) != n_in || (n_out != n_vec_out && !with_ok)) {
    return ffi::Error::InvalidArgument("perflab ffi: wrong number of operands");
  }
  if (!Lapack<T>::ready()) {
    return ffi::Error::Internal("perflab ffi: LAPACK pointers not set (import perflab.linear_solve._ffi)");
  }
  std::vector<ffi::AnyBuffer> in;
  for (int i = 0; i < n_in; ++i) {
    auto b = args.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    in.push_back(*b);
  }
  std::vector<ffi::Result<ffi::AnyBuffer>> out;
  for (int i = 0; i < n_out; ++i) {
    auto b = rets.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    out.push_back(*b);
  }
  auto xdims = out[0]->dimensions();
  if (xdims.size() < 1) return ffi::Error::InvalidArgument("perflab ffi: x must have rank >= 1");
  const int64_t n64 = xdims[xdims.size() - 1];
  if (n64 < 1 || n64 > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("perflab ffi: bad system size");
  }
  const int n = static_cast<int>(n64);
  std::vector<int64_t> batch(xdims.begin(), xdims.end() - 1);
  int64_t total = 1;
  for (auto s : batch) total *= s;

  // Input roles and their core layout.
  std::vector<Broadcast> bc;
  for (int i = 0; i < n_in; ++i) {
    int role = i;  // position within [op..., b, t_op..., t_b]
    int core_rank, k;
    int64_t core_size;
    if (role < nop) {
      k = role;
      core_rank = Solver<T>::core_rank(k);
      core_size = Solver<T>::core_size(k, n);
    } else if (role == nop) {
      core_rank = 1;
      core_size = n;
    } else if (kind == Kind::kJvp && role < 2 * nop + 1) {
      k = role - nop - 1;
      core_rank = Solver<T>::core_rank(k);
      core_size = Solver<T>::core_size(k, n);
    } else {
      core_rank = 1;
      core_size = n;
    }
    auto dims = in[i].dimensions();
    if (static_cast<int>(dims.size()) < core_rank ||
        (core_rank >= 1 && dims[dims.size() - 1] != (core_rank == 2 ? n : core_size)) ||
        (core_rank == 2 && dims[dims.size() - 2] != n)) {
      return ffi::Error::InvalidArgument("perflab ffi: operand " + std::to_string(i) + " has the wrong core shape");
    }
    Broadcast b;
    ffi::Error err = broadcast_of(in[i], core_rank, core_size, batch, i, b);
    if (err.failure()) return err;
    bc.push_back(b);
  }

  T* x_out = out[0]->template typed_data<T>();
  T* t_out = n_vec_out == 2 ? out[1]->template typed_data<T>() : nullptr;
  T* ok_out = with_ok ? out[n_vec_out]->template typed_data<T>() : nullptr;
  if (with_ok) {
    auto odims = out[n_vec_out]->dimensions();
    if (!std::equal(odims.begin(), odims.end(), batch.begin(), batch.end())) {
      return ffi::Error::InvalidArgument("perflab ffi: ok must have the batch shape of x");
    }
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();

  bool distinct_ops = total > 1;  // every system has its own operator
  for (int k = 0; k < nop; ++k) {
    for (size_t d = 0; d < batch.size(); ++d) distinct_ops = distinct_ops && (batch[d] == 1 || bc[k].strides[d] != 0);
  }

  // Systems [begin, end): its own solver workspace, so that chunks can run on several threads.
  auto process = [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<Solver<T>, Tridiagonal<T>>) {
      // Tridiagonal JVPs of distinct operators go kGroup at a time, their loops interleaved.
      if (kind == Kind::kJvp && distinct_ops && n >= 3) begin = tridiagonal_jvp_groups<T>(in, bc, batch, n, begin, end, x_out, t_out, ok_out);
    }
    Solver<T> solver;
    if constexpr (std::is_same_v<Solver<T>, Dense<T>>) solver.cholesky = cholesky;
    std::vector<T> work(2 * static_cast<size_t>(n));
    std::vector<int64_t> index = index_of(begin, batch);
    std::vector<int64_t> prev_op(nop, -1);
    int64_t prev_b = -1;
    bool ok = false;
    for (int64_t s = begin; s < end; ++s, next_index(index, batch)) {
      const T* op[nop];
      bool same_op = s > begin;
      for (int k = 0; k < nop; ++k) {
        int64_t off = offset_of(bc[k], index);
        op[k] = in[k].template typed_data<T>() + off;
        same_op = same_op && off == prev_op[k];
        prev_op[k] = off;
      }
      const int64_t b_off = offset_of(bc[nop], index);
      const T* b = in[nop].template typed_data<T>() + b_off;
      const bool same_b = same_op && b_off == prev_b;
      prev_b = b_off;
      T* x = x_out + s * n;
      T* tx = t_out ? t_out + s * n : nullptr;

      if (!same_op) ok = solver.factor(op, n);  // the factorisation, once per distinct operator
      if (!ok) {
        std::fill(x, x + n, nan);
        if (tx) std::fill(tx, tx + n, nan);
        if (ok_out) ok_out[s] = 0;
        continue;
      }
      if (kind == Kind::kJvpVector) {
        const T* tb = in[nop + 1].template typed_data<T>() + offset_of(bc[nop + 1], index);
        if (same_b) {  // x is the previous system's: only the tangent column to solve
          std::copy(x - n, x, x);
          std::copy(tb, tb + n, tx);
          solver.solve(tx, 1);
        } else {  // b and b' as two columns of one solve
          std::copy(b, b + n, work.data());
          std::copy(tb, tb + n, work.data() + n);
          solver.solve(work.data(), 2);
          std::copy(work.data(), work.data() + n, x);
          std::copy(work.data() + n, work.data() + 2 * n, tx);
        }
        if (ok_out) ok_out[s] = all_finite(x, n) ? 1 : 0;
        continue;
      }
      if (same_b) {
        std::copy(x - n, x, x);
      } else {
        std::copy(b, b + n, x);
        solver.solve(x, 1);
      }
      if (ok_out) ok_out[s] = all_finite(x, n) ? 1 : 0;
      if (kind == Kind::kJvp) {
        const T* t_op[nop];
        for (int k = 0; k < nop; ++k) t_op[k] = in[nop + 1 + k].template typed_data<T>() + offset_of(bc[nop + 1 + k], index);
        const T* tb = in[2 * nop + 1].template typed_data<T>() + offset_of(bc[2 * nop + 1], index);
        // The tangent right-hand side b' - A' x, formed here, solved with the same factors.
        std::copy(tb, tb + n, tx);
        solver.sub_matvec(t_op, x, tx);
        solver.solve(tx, 1);
      }
    }
  };

  // A batch of distinct operators is split over XLA's intra-op thread pool when it is worth a
  // thread handoff; a shared operator (jax.jacfwd, vmap over b only) stays on one thread so
  // that it is factorised once.
  const double work_estimate = static_cast<double>(total) * Solver<T>::cost(n);
  if (!distinct_ops || work_estimate < kParallelMinWork) {
    process(0, total);
  } else {
    run_chunks(pool, total, work_estimate, process);
  }
  return ffi::Error::Success();
}

template <template <typename> class Solver>
ffi::Error dispatch(Kind kind, bool cholesky, ffi::ThreadPool& pool, ffi::RemainingArgs args,
                    ffi::RemainingRets rets) {
  if (args.size() < 1) return ffi::Error::InvalidArgument("perflab ffi: no operands");
  auto first = args.get<ffi::AnyBuffer>(0);
  if (!first.has_value()) return first.error();
  for (size_t i = 1; i < args.size(); ++i) {
    auto b = args.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    if (b->element_type() != first->element_type()) {
      return ffi::Error::InvalidArgument("perflab ffi: operands must share one dtype");
    }
  }
  switch (first->element_type()) {
    case ffi::DataType::F64:
      return run<double, Solver>(kind, cholesky, pool, args, rets);
    case ffi::DataType::F32:
      return run<float, Solver>(kind, cholesky, pool, args, rets);
    default:
      return ffi::Error::InvalidArgument("perflab ffi: only float32 and float64 are supported");
  }
}

#define PERFLAB_HANDLER(NAME, SOLVER, KIND, CHOL)                                                    \
  ffi::Error NAME##_impl(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) { \
    return dispatch<SOLVER>(KIND, CHOL, pool, args, rets);                                          \
  }                                                                                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, NAME##_impl,                                                   \
                                ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().RemainingArgs().RemainingRets());

PERFLAB_HANDLER(LuSolve, Dense, Kind::kSolve, false)
PERFLAB_HANDLER(LuJvp, Dense, Kind::kJvp, false)
PERFLAB_HANDLER(LuJvpVector, Dense, Kind::kJvpVector, false)
PERFLAB_HANDLER(CholeskySolve, Dense, Kind::kSolve, true)
PERFLAB_HANDLER(CholeskyJvp, Dense, Kind::kJvp, true)
PERFLAB_HANDLER(CholeskyJvpVector, Dense, Kind::kJvpVector, true)
PERFLAB_HANDLER(TridiagonalSolve, Tridiagonal, Kind::kSolve, false)
PERFLAB_HANDLER(TridiagonalJvp, Tridiagonal, Kind::kJvp, false)
PERFLAB_HANDLER(TridiagonalJvpVector, Tridiagonal, Kind::kJvpVector, false)

// ------------------------------------------------------------------ Thomas substitution

// The heat equation's factor_once_ffi time step: solve with stored Thomas factors (those of
// `_heat._thomas_factor`: multipliers m, super-diagonal ratios cp, reciprocal pivots inv, all of
// length n) for rhs of shape (n,) or (n, k), row-major, every column at once:
// y_i = rhs_i inv_i - m_i y_{i-1}, x_i = y_i - cp_i x_{i+1}. The k columns are independent
// chains, interleaved in the inner loop.
template <typename T>
ffi::Error thomas_substitute(ffi::AnyBuffer m_buf, ffi::AnyBuffer cp_buf, ffi::AnyBuffer inv_buf,
                             ffi::AnyBuffer rhs_buf, ffi::Result<ffi::AnyBuffer> out) {
  auto dims = rhs_buf.dimensions();
  if (dims.size() < 1 || dims.size() > 2) {
    return ffi::Error::InvalidArgument("perflab thomas: rhs must have shape (n,) or (n, k)");
  }
  const int64_t n = dims[0];
  const int64_t k = dims.size() == 2 ? dims[1] : 1;
  for (const ffi::AnyBuffer* f : {&m_buf, &cp_buf, &inv_buf}) {
    if (f->dimensions().size() != 1 || f->dimensions()[0] != n) {
      return ffi::Error::InvalidArgument("perflab thomas: factors must have shape (n,)");
    }
  }
  const T* m = m_buf.typed_data<T>();
  const T* cp = cp_buf.typed_data<T>();
  const T* inv = inv_buf.typed_data<T>();
  const T* r = rhs_buf.typed_data<T>();
  T* x = out->typed_data<T>();
  if (k == 2) {  // the heat equation's case (u and u'), unrolled
    T y0 = 0, y1 = 0;
    for (int64_t i = 0; i < n; ++i) {
      y0 = r[2 * i] * inv[i] - m[i] * y0;
      y1 = r[2 * i + 1] * inv[i] - m[i] * y1;
      x[2 * i] = y0;
      x[2 * i + 1] = y1;
    }
    T x0 = 0, x1 = 0;
    for (int64_t i = n - 1; i >= 0; --i) {
      x0 = x[2 * i] - cp[i] * x0;
      x1 = x[2 * i + 1] - cp[i] * x1;
      x[2 * i] = x0;
      x[2 * i + 1] = x1;
    }
    return ffi::Error::Success();
  }
  for (int64_t c = 0; c < k; ++c) {
    T y = 0;
    for (int64_t i = 0; i < n; ++i) x[i * k + c] = y = r[i * k + c] * inv[i] - m[i] * y;
    T z = 0;
    for (int64_t i = n - 1; i >= 0; --i) x[i * k + c] = z = x[i * k + c] - cp[i] * z;
  }
  return ffi::Error::Success();
}

ffi::Error ThomasSubstitute_impl(ffi::AnyBuffer m, ffi::AnyBuffer cp, ffi::AnyBuffer inv, ffi::AnyBuffer rhs,
                                 ffi::Result<ffi::AnyBuffer> out) {
  for (const ffi::AnyBuffer* b : {&cp, &inv, &rhs}) {
    if (b->element_type() != m.element_type()) {
      return ffi::Error::InvalidArgument("perflab thomas: operands must share one dtype");
    }
  }
  switch (m.element_type()) {
    case ffi::DataType::F64:
      return thomas_substitute<double>(m, cp, inv, rhs, out);
    case ffi::DataType::F32:
      return thomas_substitute<float>(m, cp, inv, rhs, out);
    default:
      return ffi::Error::InvalidArgument("perflab thomas: only float32 and float64 are supported");
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ThomasSubstitute, ThomasSubstitute_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

// ------------------------------------------------------------------ reverse mode

// Reverse mode splits the JVP into a primal part that keeps its factorisation and a part linear
// in the tangents that reuses it (JAX transposes the latter into the backward pass):
//   FactorSolve:  (op..., b)          -> (x, ok, F)   factorise, solve, keep the factors F;
//   Tangent:      (F, x, t_op..., t_b) -> x'           x' = A^-1 (b' - A' x);
//   TangentVector:(F, t_b)            -> x'           x' = A^-1 b';
//   Cotangent:    (F, x, g)           -> (l, ct_op...) l = A^-T g, ct_op = -l x^T on A's pattern;
//   CotangentVector: (F, g)           -> l            l = A^-T g.
// F is one (rows, n) buffer per system, in the operands' dtype (pivots stored as values):
// LU: the getrf factors of row-major A (column-major A^T), then the pivots (rows n + 1);
// Cholesky: the potrf factor (rows n); tridiagonal: gttrf's dl, d, du, du2, the pivots and
// 1 / d (rows 6). Leading batch dimensions broadcast as in `run`.

enum class RKind { kFactorSolve, kTangent, kTangentVector, kCotangent, kCotangentVector };

template <typename T>
struct DenseReverse {
  static constexpr int kOperatorBuffers = 1;
  static int core_rank(int) { return 2; }
  static int64_t core_size(int, int64_t n) { return n * n; }
  static int64_t rows(int64_t n, bool cholesky) { return cholesky ? n : n + 1; }
  static double cost(int64_t n) { return static_cast<double>(n) * n * n / 3 + 4.0 * n * n; }

  bool cholesky = false;
  std::vector<int> ipiv;

  bool factor(const T* const* op, T* f, int n) {
    std::copy(op[0], op[0] + static_cast<size_t>(n) * n, f);
    int info = 0;
    if (cholesky) {
      char uplo = 'L';
      Lapack<T>::potrf(&uplo, &n, f, &n, &info);
    } else {
      ipiv.resize(n);
      Lapack<T>::getrf(&n, &n, f, &n, ipiv.data(), &info);
      for (int i = 0; i < n; ++i) f[static_cast<size_t>(n) * n + i] = static_cast<T>(ipiv[i]);
    }
    return info == 0;
  }

  // Solve A y = rhs (transpose: A^T y = rhs) in place with the factors f.
  void solve(const T* f, T* rhs, int n, bool transpose) {
    int one = 1, info = 0;
    T* a = const_cast<T*>(f);
    if (cholesky) {  // A is symmetric: the transposed solve is the same
      char lo = 'L', no = 'N', tr = 'T';
      Lapack<T>::trsv(&lo, &no, &no, &n, a, &n, rhs, &one);
      Lapack<T>::trsv(&lo, &tr, &no, &n, a, &n, rhs, &one);
      return;
    }
    ipiv.resize(n);
    for (int i = 0; i < n; ++i) ipiv[i] = static_cast<int>(f[static_cast<size_t>(n) * n + i]);
    // The factors are of A^T (row-major A read as column-major): 'T' solves with A, 'N' with A^T.
    char trans = transpose ? 'N' : 'T';
    Lapack<T>::getrs(&trans, &n, &one, a, &n, ipiv.data(), rhs, &n, &info);
  }

  static void sub_matvec(const T* const* t_op, const T* x, T* r, int n) {
    char trans = 'T';  // row-major A' is column-major A'^T: gemv with 'T' computes A' x
    T alpha = -1, beta = 1;
    int one = 1;
    Lapack<T>::gemv(&trans, &n, &n, &alpha, const_cast<T*>(t_op[0]), &n, const_cast<T*>(x), &one, &beta, r, &one);
  }

  static void cotangent(const T* lam, const T* x, T* const* ct, int n) {
    for (int i = 0; i < n; ++i) {
      const T li = -lam[i];
      T* row = ct[0] + static_cast<size_t>(i) * n;
      for (int j = 0; j < n; ++j) row[j] = li * x[j];
    }
  }
};

template <typename T>
struct TridiagonalReverse {
  static constexpr int kOperatorBuffers = 3;
  static int core_rank(int) { return 1; }
  static int64_t core_size(int k, int64_t n) { return k == 1 ? n : n - 1; }
  static int64_t rows(int64_t, bool) { return 6; }
  static double cost(int64_t n) { return 8.0 * n; }

  bool cholesky = false;
  std::vector<int> ipiv;

  bool factor(const T* const* op, T* f, int n) {
    T *dl = f, *d = f + n, *du = f + 2 * n, *du2 = f + 3 * n, *piv = f + 4 * n, *inv = f + 5 * n;
    std::fill(f, f + 6 * static_cast<size_t>(n), T(0));
    std::copy(op[0], op[0] + (n - 1), dl);
    std::copy(op[1], op[1] + n, d);
    std::copy(op[2], op[2] + (n - 1), du);
    ipiv.resize(n);
    int info = 0;
    Lapack<T>::gttrf(&n, dl, d, du, du2, ipiv.data(), &info);
    for (int i = 0; i < n; ++i) piv[i] = static_cast<T>(ipiv[i]);
    if (info != 0) return false;
    for (int i = 0; i < n; ++i) inv[i] = T(1) / d[i];
    return true;
  }

  // gttrs' substitutions (dgtts2) with the stored reciprocals of U's diagonal.
  void solve(const T* f, T* b, int n, bool transpose) {
    const T *dl = f, *du = f + 2 * n, *du2 = f + 3 * n, *piv = f + 4 * n, *inv = f + 5 * n;
    if (!transpose) {
      for (int i = 0; i + 1 < n; ++i) {
        if (piv[i] == T(i + 1)) {
          b[i + 1] -= dl[i] * b[i];
        } else {
          T temp = b[i];
          b[i] = b[i + 1];
          b[i + 1] = temp - dl[i] * b[i];
        }
      }
      b[n - 1] *= inv[n - 1];
      if (n > 1) b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) * inv[n - 2];
      for (int i = n - 3; i >= 0; --i) b[i] = (b[i] - du[i] * b[i + 1] - du2[i] * b[i + 2]) * inv[i];
      return;
    }
    b[0] *= inv[0];  // U^T
    if (n > 1) b[1] = (b[1] - du[0] * b[0]) * inv[1];
    for (int i = 2; i < n; ++i) b[i] = (b[i] - du[i - 1] * b[i - 1] - du2[i - 2] * b[i - 2]) * inv[i];
    for (int i = n - 2; i >= 0; --i) {  // L^T, undoing the row interchanges
      const int ip = static_cast<int>(piv[i]) - 1;
      T temp = b[i] - dl[i] * b[i + 1];
      b[i] = b[ip];
      b[ip] = temp;
    }
  }

  static void sub_matvec(const T* const* t_op, const T* x, T* r, int n) {
    Tridiagonal<T>::sub_matvec(t_op, x, r, n);
  }

  static void cotangent(const T* lam, const T* x, T* const* ct, int n) {
    for (int i = 0; i + 1 < n; ++i) ct[0][i] = -lam[i + 1] * x[i];
    for (int i = 0; i < n; ++i) ct[1][i] = -lam[i] * x[i];
    for (int i = 0; i + 1 < n; ++i) ct[2][i] = -lam[i] * x[i + 1];
  }
};

// G tridiagonal systems of the reverse-mode kernels side by side, on their own F buffers (the
// layout of `TridiagonalReverse`): the same operations per system as gttrf and the
// substitutions of `TridiagonalReverse::solve`, in the same order, so every system's result is
// the one-at-a-time path's; G independent dependency chains keep the core busy.
template <typename T, int G>
struct TridiagonalReverseGroup {
  // Factorise the bands op[g] into f[g] and solve x[g] (holding b) in place; ok[g] as `factor`.
  static void factor_solve(const T* const (*op)[3], T* const* f, T* const* x, int n, bool* ok) {
    T *dl[G], *d[G], *du[G], *du2[G], *piv[G], *inv[G];
    for (int g = 0; g < G; ++g) {
      T* fg = f[g];
      dl[g] = fg, d[g] = fg + n, du[g] = fg + 2 * n, du2[g] = fg + 3 * n, piv[g] = fg + 4 * n, inv[g] = fg + 5 * n;
      std::fill(fg, fg + 6 * static_cast<size_t>(n), T(0));
      std::copy(op[g][0], op[g][0] + (n - 1), dl[g]);
      std::copy(op[g][1], op[g][1] + n, d[g]);
      std::copy(op[g][2], op[g][2] + (n - 1), du[g]);
    }
    for (int i = 0; i + 1 < n; ++i) {  // dgttrf, partial pivoting of the bands
      for (int g = 0; g < G; ++g) {
        if (std::abs(d[g][i]) >= std::abs(dl[g][i])) {
          piv[g][i] = T(i + 1);
          if (d[g][i] != T(0)) {
            T fact = dl[g][i] / d[g][i];
            dl[g][i] = fact;
            d[g][i + 1] -= fact * du[g][i];
          }
        } else {
          piv[g][i] = T(i + 2);
          T fact = d[g][i] / dl[g][i];
          d[g][i] = dl[g][i];
          dl[g][i] = fact;
          T temp = du[g][i];
          du[g][i] = d[g][i + 1];
          d[g][i + 1] = temp - fact * d[g][i + 1];
          if (i + 2 < n) {
            du2[g][i] = du[g][i + 1];
            du[g][i + 1] = -fact * du[g][i + 1];
          }
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      piv[g][n - 1] = T(n);
      ok[g] = true;
      for (int i = 0; i < n; ++i) ok[g] = ok[g] && d[g][i] != T(0);
      for (int i = 0; i < n; ++i) inv[g][i] = T(1) / d[g][i];
    }
    for (int i = 0; i + 1 < n; ++i) {  // L
      for (int g = 0; g < G; ++g) {
        T* b = x[g];
        if (piv[g][i] == T(i + 1)) {
          b[i + 1] -= dl[g][i] * b[i];
        } else {
          T temp = b[i];
          b[i] = b[i + 1];
          b[i + 1] = temp - dl[g][i] * b[i];
        }
      }
    }
    for (int g = 0; g < G; ++g) {  // U
      T* b = x[g];
      b[n - 1] *= inv[g][n - 1];
      if (n > 1) b[n - 2] = (b[n - 2] - du[g][n - 2] * b[n - 1]) * inv[g][n - 2];
    }
    for (int i = n - 3; i >= 0; --i) {
      for (int g = 0; g < G; ++g) {
        T* b = x[g];
        b[i] = (b[i] - du[g][i] * b[i + 1] - du2[g][i] * b[i + 2]) * inv[g][i];
      }
    }
  }

  // lambda[g] (holding g) <- A^-T g with the factors f[g], as `TridiagonalReverse::solve`.
  static void solve_transposed(const T* const* f, T* const* lam, int n) {
    for (int g = 0; g < G; ++g) {
      const T* inv = f[g] + 5 * n;
      const T* du = f[g] + 2 * n;
      T* b = lam[g];
      b[0] *= inv[0];
      if (n > 1) b[1] = (b[1] - du[0] * b[0]) * inv[1];
    }
    for (int i = 2; i < n; ++i) {
      for (int g = 0; g < G; ++g) {
        const T* fg = f[g];
        T* b = lam[g];
        b[i] = (b[i] - fg[2 * n + i - 1] * b[i - 1] - fg[3 * n + i - 2] * b[i - 2]) * fg[5 * n + i];
      }
    }
    for (int i = n - 2; i >= 0; --i) {
      for (int g = 0; g < G; ++g) {
        const T* fg = f[g];
        T* b = lam[g];
        const int ip = static_cast<int>(fg[4 * n + i]) - 1;
        T temp = b[i] - fg[i] * b[i + 1];
        b[i] = b[ip];
        b[ip] = temp;
      }
    }
  }
};

template <typename T, template <typename> class Solver>
ffi::Error run_reverse(RKind kind, bool cholesky, ffi::ThreadPool& pool, ffi::RemainingArgs& args,
                       ffi::RemainingRets& rets) {
  constexpr int nop = Solver<T>::kOperatorBuffers;
  int n_in = 0, n_out = 0;
  switch (kind) {
    case RKind::kFactorSolve: n_in = nop + 1, n_out = 3; break;
    case RKind::kTangent: n_in = nop + 3, n_out = 1; break;
    case RKind::kTangentVector: n_in = 2, n_out = 1; break;
    case RKind::kCotangent: n_in = 3, n_out = 1 + nop; break;
    case RKind::kCotangentVector: n_in = 2, n_out = 1; break;
  }
  if (static_cast<int>(args.size()) != n_in || static_cast<int>(rets.size()) != n_out) {
    return ffi::Error::InvalidArgument("perflab ffi: wrong number of operands");
  }
  if (!Lapack<T>::ready()) {
    return ffi::Error::Internal("perflab ffi: LAPACK pointers not set (import perflab.linear_solve._ffi)");
  }
  std::vector<ffi::AnyBuffer> in;
  for (int i = 0; i < n_in; ++i) {
    auto b = args.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    in.push_back(*b);
  }
  std::vector<ffi::Result<ffi::AnyBuffer>> out;
  for (int i = 0; i < n_out; ++i) {
    auto b = rets.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    if ((*b)->element_type() != in[0].element_type()) {
      return ffi::Error::InvalidArgument("perflab ffi: outputs must have the operands' dtype");
    }
    out.push_back(*b);
  }
  auto xdims = out[0]->dimensions();
  if (xdims.size() < 1) return ffi::Error::InvalidArgument("perflab ffi: x must have rank >= 1");
  const int64_t n64 = xdims[xdims.size() - 1];
  if (n64 < 1 || n64 > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("perflab ffi: bad system size");
  }
  const int n = static_cast<int>(n64);
  std::vector<int64_t> batch(xdims.begin(), xdims.end() - 1);
  int64_t total = 1;
  for (auto s : batch) total *= s;
  const int64_t rows = Solver<T>::rows(n, cholesky);

  // Core layout of input i: (rank, trailing dims).
  auto core = [&](int i, int& rank, int64_t& d0, int64_t& d1) {
    bool is_f = kind != RKind::kFactorSolve && i == 0;
    bool is_op = (kind == RKind::kFactorSolve && i < nop) || (kind == RKind::kTangent && i >= 2 && i < 2 + nop);
    if (is_f) {
      rank = 2, d0 = rows, d1 = n;
    } else if (is_op) {
      int k = kind == RKind::kFactorSolve ? i : i - 2;
      rank = Solver<T>::core_rank(k);
      d0 = rank == 2 ? n : Solver<T>::core_size(k, n), d1 = n;
    } else {
      rank = 1, d0 = n, d1 = n;
    }
  };
  std::vector<Broadcast> bc;
  for (int i = 0; i < n_in; ++i) {
    int rank;
    int64_t d0, d1;
    core(i, rank, d0, d1);
    auto dims = in[i].dimensions();
    const size_t r = dims.size();
    if (static_cast<int>(r) < rank || (rank == 1 && dims[r - 1] != d0) ||
        (rank == 2 && (dims[r - 2] != d0 || dims[r - 1] != d1))) {
      return ffi::Error::InvalidArgument("perflab ffi: operand " + std::to_string(i) + " has the wrong core shape");
    }
    Broadcast b;
    ffi::Error err = broadcast_of(in[i], rank, rank == 2 ? d0 * d1 : d0, batch, i, b);
    if (err.failure()) return err;
    bc.push_back(b);
  }
  // Output k's elements per system.
  std::vector<int64_t> out_size(n_out, n);
  if (kind == RKind::kFactorSolve) out_size[1] = 1, out_size[2] = rows * n;
  if (kind == RKind::kCotangent) {
    for (int k = 0; k < nop; ++k) out_size[1 + k] = Solver<T>::core_size(k, n);
  }
  for (int k = 0; k < n_out; ++k) {
    int64_t elems = 1;
    for (auto d : out[k]->dimensions()) elems *= d;
    if (elems != total * out_size[k]) {
      return ffi::Error::InvalidArgument("perflab ffi: output " + std::to_string(k) + " has the wrong shape");
    }
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();

  auto process = [&](int64_t begin, int64_t end) {
    Solver<T> solver;
    solver.cholesky = cholesky;
    std::vector<int64_t> index = index_of(begin, batch);
    auto at = [&](int i) { return in[i].template typed_data<T>() + offset_of(bc[i], index); };
    auto res = [&](int k, int64_t s) { return out[k]->template typed_data<T>() + s * out_size[k]; };
    int64_t s = begin;
    if constexpr (std::is_same_v<Solver<T>, TridiagonalReverse<T>>) {
      // Tridiagonal systems kGroup at a time (`TridiagonalReverseGroup`).
      using Group = TridiagonalReverseGroup<T, kGroup>;
      if (n >= 3 && (kind == RKind::kFactorSolve || kind == RKind::kCotangent || kind == RKind::kCotangentVector)) {
        const T nan = std::numeric_limits<T>::quiet_NaN();
        for (; s + kGroup <= end; s += kGroup) {
          const T* op[kGroup][3];
          const T* f_in[kGroup];
          const T* src[kGroup];
          const T* xs[kGroup];
          T* y[kGroup];
          T* f_out[kGroup];
          for (int g = 0; g < kGroup; ++g, next_index(index, batch)) {
            y[g] = res(0, s + g);
            if (kind == RKind::kFactorSolve) {
              for (int k = 0; k < 3; ++k) op[g][k] = at(k);
              f_out[g] = res(2, s + g);
              src[g] = at(3);
            } else {
              f_in[g] = at(0);
              src[g] = at(kind == RKind::kCotangent ? 2 : 1);
              xs[g] = kind == RKind::kCotangent ? at(1) : nullptr;
            }
            std::copy(src[g], src[g] + n, y[g]);
          }
          if (kind == RKind::kFactorSolve) {
            bool ok[kGroup];
            Group::factor_solve(op, f_out, y, n, ok);
            for (int g = 0; g < kGroup; ++g) {
              ok[g] = ok[g] && all_finite(y[g], n);
              if (!ok[g]) std::fill(y[g], y[g] + n, nan);
              *res(1, s + g) = ok[g] ? 1 : 0;
            }
            continue;
          }
          Group::solve_transposed(f_in, y, n);
          if (kind == RKind::kCotangent) {
            for (int g = 0; g < kGroup; ++g) {
              T* ct[3] = {res(1, s + g), res(2, s + g), res(3, s + g)};
              TridiagonalReverse<T>::cotangent(y[g], xs[g], ct, n);
            }
          }
        }
      }
    }
    for (; s < end; ++s, next_index(index, batch)) {
      T* y = res(0, s);
      if (kind == RKind::kFactorSolve) {
        const T* op[nop];
        for (int k = 0; k < nop; ++k) op[k] = at(k);
        T* f = res(2, s);
        const T* b = at(nop);
        bool ok = solver.factor(op, f, n);
        if (ok) {
          std::copy(b, b + n, y);
          solver.solve(f, y, n, false);
          ok = all_finite(y, n);
        } else {
          std::fill(y, y + n, nan);
        }
        *res(1, s) = ok ? 1 : 0;
        continue;
      }
      const T* f = at(0);
      if (kind == RKind::kTangent) {
        const T* x = at(1);
        const T* t_op[nop];
        for (int k = 0; k < nop; ++k) t_op[k] = at(2 + k);
        const T* tb = at(2 + nop);
        std::copy(tb, tb + n, y);
        Solver<T>::sub_matvec(t_op, x, y, n);
        solver.solve(f, y, n, false);
      } else if (kind == RKind::kTangentVector) {
        const T* tb = at(1);
        std::copy(tb, tb + n, y);
        solver.solve(f, y, n, false);
      } else {
        const T* g = at(kind == RKind::kCotangent ? 2 : 1);
        std::copy(g, g + n, y);
        solver.solve(f, y, n, true);
        if (kind == RKind::kCotangent) {
          T* ct[nop];
          for (int k = 0; k < nop; ++k) ct[k] = res(1 + k, s);
          Solver<T>::cotangent(y, at(1), ct, n);
        }
      }
    }
  };

  const double per_system = kind == RKind::kFactorSolve ? Solver<T>::cost(n) : 4.0 * Solver<T>::core_size(0, n);
  const double work_estimate = static_cast<double>(total) * per_system;
  if (total < 2 || work_estimate < kParallelMinWork) {
    process(0, total);
  } else {
    run_chunks(pool, total, work_estimate, process);
  }
  return ffi::Error::Success();
}

template <template <typename> class Solver>
ffi::Error dispatch_reverse(RKind kind, bool cholesky, ffi::ThreadPool& pool, ffi::RemainingArgs args,
                            ffi::RemainingRets rets) {
  if (args.size() < 1) return ffi::Error::InvalidArgument("perflab ffi: no operands");
  auto first = args.get<ffi::AnyBuffer>(0);
  if (!first.has_value()) return first.error();
  for (size_t i = 1; i < args.size(); ++i) {
    auto b = args.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    if (b->element_type() != first->element_type()) {
      return ffi::Error::InvalidArgument("perflab ffi: operands must share one dtype");
    }
  }
  switch (first->element_type()) {
    case ffi::DataType::F64:
      return run_reverse<double, Solver>(kind, cholesky, pool, args, rets);
    case ffi::DataType::F32:
      return run_reverse<float, Solver>(kind, cholesky, pool, args, rets);
    default:
      return ffi::Error::InvalidArgument("perflab ffi: only float32 and float64 are supported");
  }
}

#define PERFLAB_REVERSE_HANDLER(NAME, SOLVER, KIND, CHOL)                                            \
  ffi::Error NAME##_impl(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) { \
    return dispatch_reverse<SOLVER>(KIND, CHOL, pool, args, rets);                                  \
  }                                                                                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, NAME##_impl,                                                   \
                                ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().RemainingArgs().RemainingRets());

#define PERFLAB_REVERSE_HANDLERS(PREFIX, SOLVER, CHOL)                                         \
  PERFLAB_REVERSE_HANDLER(PREFIX##FactorSolve, SOLVER, RKind::kFactorSolve, CHOL)             \
  PERFLAB_REVERSE_HANDLER(PREFIX##Tangent, SOLVER, RKind::kTangent, CHOL)                     \
  PERFLAB_REVERSE_HANDLER(PREFIX##TangentVector, SOLVER, RKind::kTangentVector, CHOL)         \
  PERFLAB_REVERSE_HANDLER(PREFIX##Cotangent, SOLVER, RKind::kCotangent, CHOL)                 \
  PERFLAB_REVERSE_HANDLER(PREFIX##CotangentVector, SOLVER, RKind::kCotangentVector, CHOL)

PERFLAB_REVERSE_HANDLERS(Lu, DenseReverse, false)
PERFLAB_REVERSE_HANDLERS(Cholesky, DenseReverse, true)
PERFLAB_REVERSE_HANDLERS(Tridiagonal, TridiagonalReverse, false)

// ------------------------------------------------------------------ heat equation, reverse mode

// The time loops of the heat equation's reverse mode, each one call: `steps` substitutions with
// the stored Thomas factors (those of `thomas_substitute`), one column.
template <typename T>
void thomas_forward(const T* m, const T* cp, const T* inv, int64_t n, T* x) {
  T y = 0;
  for (int64_t i = 0; i < n; ++i) x[i] = y = x[i] * inv[i] - m[i] * y;
  T z = 0;
  for (int64_t i = n - 1; i >= 0; --i) x[i] = z = x[i] - cp[i] * z;
}

template <typename T>
void thomas_transposed(const T* m, const T* cp, const T* inv, int64_t n, T* x) {
  T z = 0;
  for (int64_t i = 0; i < n; ++i) x[i] = z = x[i] - (i > 0 ? cp[i - 1] : T(0)) * z;
  T w = 0;
  for (int64_t i = n - 1; i >= 0; --i) {
    w = x[i] - (i + 1 < n ? m[i + 1] : T(0)) * w;
    x[i] = inv[i] * w;
  }
}

ffi::Error check_factors(const ffi::AnyBuffer& m, const ffi::AnyBuffer& cp, const ffi::AnyBuffer& inv, int64_t n) {
  for (const ffi::AnyBuffer* f : {&m, &cp, &inv}) {
    if (f->dimensions().size() != 1 || f->dimensions()[0] != n) {
      return ffi::Error::InvalidArgument("perflab heat: factors must have shape (n,)");
    }
    if (f->element_type() != m.element_type()) {
      return ffi::Error::InvalidArgument("perflab heat: operands must share one dtype");
    }
  }
  return ffi::Error::Success();
}

// (m, cp, inv, u0) -> (u_steps, [states (steps, n): u_1 .. u_steps]); `steps` an attribute.
template <typename T>
ffi::Error heat_steps(ffi::AnyBuffer m, ffi::AnyBuffer cp, ffi::AnyBuffer inv, ffi::AnyBuffer u0, int64_t steps,
                      ffi::RemainingRets& rets) {
  const int64_t n = u0.dimensions().size() == 1 ? u0.dimensions()[0] : -1;
  if (n < 1) return ffi::Error::InvalidArgument("perflab heat: u0 must have shape (n,)");
  ffi::Error err = check_factors(m, cp, inv, n);
  if (err.failure()) return err;
  auto u = rets.get<ffi::AnyBuffer>(0);
  if (!u.has_value()) return u.error();
  T* states = nullptr;
  if (rets.size() == 2) {
    auto s = rets.get<ffi::AnyBuffer>(1);
    if (!s.has_value()) return s.error();
    if ((*s)->element_count() != static_cast<size_t>(steps * n)) {
      return ffi::Error::InvalidArgument("perflab heat: states must have shape (steps, n)");
    }
    states = (*s)->typed_data<T>();
  }
  T* x = (*u)->typed_data<T>();
  std::copy(u0.typed_data<T>(), u0.typed_data<T>() + n, x);
  for (int64_t k = 0; k < steps; ++k) {
    thomas_forward(m.typed_data<T>(), cp.typed_data<T>(), inv.typed_data<T>(), n, x);
    if (states) std::copy(x, x + n, states + k * n);
  }
  return ffi::Error::Success();
}

// The transpose of the tangent loop u'_{k+1} = A^-1 (u'_k - A' u_{k+1}) (u'_steps from u'_0 and
// the bands of A'): (m, cp, inv, [states], g) -> (ct_u0, [ct_lower, ct_diag, ct_upper]).
// Backwards over the steps: mu = A^-T lambda, the bands' cotangents gain -mu u_{k+1}^T on the
// tridiagonal pattern, lambda <- mu. Without states (no operator tangent): lambda <- A^-T lambda.
template <typename T>
ffi::Error heat_adjoint(ffi::AnyBuffer m, ffi::AnyBuffer cp, ffi::AnyBuffer inv, ffi::RemainingArgs& args,
                        int64_t steps, ffi::RemainingRets& rets) {
  const bool with_states = args.size() == 2;
  auto g_buf = args.get<ffi::AnyBuffer>(with_states ? 1 : 0);
  if (!g_buf.has_value()) return g_buf.error();
  const int64_t n = g_buf->dimensions().size() == 1 ? g_buf->dimensions()[0] : -1;
  if (n < 1) return ffi::Error::InvalidArgument("perflab heat: the cotangent must have shape (n,)");
  ffi::Error err = check_factors(m, cp, inv, n);
  if (err.failure()) return err;
  if (static_cast<int>(rets.size()) != (with_states ? 4 : 1)) {
    return ffi::Error::InvalidArgument("perflab heat: wrong number of outputs");
  }
  const T* states = nullptr;
  if (with_states) {
    auto s = args.get<ffi::AnyBuffer>(0);
    if (!s.has_value()) return s.error();
    if (s->element_count() != static_cast<size_t>(steps * n)) {
      return ffi::Error::InvalidArgument("perflab heat: states must have shape (steps, n)");
    }
    states = s->typed_data<T>();
  }
  std::vector<T*> out;
  for (size_t k = 0; k < rets.size(); ++k) {
    auto r = rets.get<ffi::AnyBuffer>(k);
    if (!r.has_value()) return r.error();
    out.push_back((*r)->typed_data<T>());
  }
  T* lam = out[0];
  std::copy(g_buf->typed_data<T>(), g_buf->typed_data<T>() + n, lam);
  if (with_states) {
    std::fill(out[1], out[1] + (n - 1), T(0));
    std::fill(out[2], out[2] + n, T(0));
    std::fill(out[3], out[3] + (n - 1), T(0));
  }
  const T* mm = m.typed_data<T>();
  const T* cc = cp.typed_data<T>();
  const T* iv = inv.typed_data<T>();
  for (int64_t k = steps - 1; k >= 0; --k) {
    if (!with_states) {
      thomas_transposed(mm, cc, iv, n, lam);
      continue;
    }
    // thomas_transposed with the bands' cotangents accumulated as each lambda_i becomes final
    // (off the substitution's loop-carried chain).
    const T* u = states + k * n;
    T z = 0;
    for (int64_t i = 0; i < n; ++i) lam[i] = z = lam[i] - (i > 0 ? cc[i - 1] : T(0)) * z;
    T w = 0;
    T* lo = out[1];
    T* di = out[2];
    T* up = out[3];
    for (int64_t i = n - 1; i >= 0; --i) {
      w = lam[i] - (i + 1 < n ? mm[i + 1] : T(0)) * w;
      const T l = lam[i] = iv[i] * w;
      di[i] -= l * u[i];
      if (i + 1 < n) {
        up[i] -= l * u[i + 1];
        lo[i] -= lam[i + 1] * u[i];
      }
    }
  }
  return ffi::Error::Success();
}

ffi::Error HeatSteps_impl(ffi::AnyBuffer m, ffi::AnyBuffer cp, ffi::AnyBuffer inv, ffi::AnyBuffer u0, int64_t steps,
                          ffi::RemainingRets rets) {
  if (u0.element_type() != m.element_type()) {
    return ffi::Error::InvalidArgument("perflab heat: operands must share one dtype");
  }
  switch (m.element_type()) {
    case ffi::DataType::F64:
      return heat_steps<double>(m, cp, inv, u0, steps, rets);
    case ffi::DataType::F32:
      return heat_steps<float>(m, cp, inv, u0, steps, rets);
    default:
      return ffi::Error::InvalidArgument("perflab heat: only float32 and float64 are supported");
  }
}

ffi::Error HeatAdjoint_impl(ffi::AnyBuffer m, ffi::AnyBuffer cp, ffi::AnyBuffer inv, ffi::RemainingArgs args,
                            int64_t steps, ffi::RemainingRets rets) {
  for (size_t i = 0; i < args.size(); ++i) {
    auto b = args.get<ffi::AnyBuffer>(i);
    if (!b.has_value()) return b.error();
    if (b->element_type() != m.element_type()) {
      return ffi::Error::InvalidArgument("perflab heat: operands must share one dtype");
    }
  }
  switch (m.element_type()) {
    case ffi::DataType::F64:
      return heat_adjoint<double>(m, cp, inv, args, steps, rets);
    case ffi::DataType::F32:
      return heat_adjoint<float>(m, cp, inv, args, steps, rets);
    default:
      return ffi::Error::InvalidArgument("perflab heat: only float32 and float64 are supported");
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(HeatSteps, HeatSteps_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Attr<int64_t>("steps")
                                  .RemainingRets());

XLA_FFI_DEFINE_HANDLER_SYMBOL(HeatAdjoint, HeatAdjoint_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Attr<int64_t>("steps")
                                  .RemainingRets());

// ------------------------------------------------------------------ Python module

struct Target {
  const char* name;
  XLA_FFI_Handler* handler;
};

const Target kTargets[] = {
    {"perflab_lu_solve", LuSolve},
    {"perflab_lu_jvp", LuJvp},
    {"perflab_lu_jvp_vector", LuJvpVector},
    {"perflab_cholesky_solve", CholeskySolve},
    {"perflab_cholesky_jvp", CholeskyJvp},
    {"perflab_cholesky_jvp_vector", CholeskyJvpVector},
    {"perflab_tridiagonal_solve", TridiagonalSolve},
    {"perflab_tridiagonal_jvp", TridiagonalJvp},
    {"perflab_tridiagonal_jvp_vector", TridiagonalJvpVector},
    {"perflab_thomas_substitute", ThomasSubstitute},
    {"perflab_heat_steps", HeatSteps},
    {"perflab_heat_adjoint", HeatAdjoint},
    {"perflab_lu_factor_solve", LuFactorSolve},
    {"perflab_lu_tangent", LuTangent},
    {"perflab_lu_tangent_vector", LuTangentVector},
    {"perflab_lu_cotangent", LuCotangent},
    {"perflab_lu_cotangent_vector", LuCotangentVector},
    {"perflab_cholesky_factor_solve", CholeskyFactorSolve},
    {"perflab_cholesky_tangent", CholeskyTangent},
    {"perflab_cholesky_tangent_vector", CholeskyTangentVector},
    {"perflab_cholesky_cotangent", CholeskyCotangent},
    {"perflab_cholesky_cotangent_vector", CholeskyCotangentVector},
    {"perflab_tridiagonal_factor_solve", TridiagonalFactorSolve},
    {"perflab_tridiagonal_tangent", TridiagonalTangent},
    {"perflab_tridiagonal_tangent_vector", TridiagonalTangentVector},
    {"perflab_tridiagonal_cotangent", TridiagonalCotangent},
    {"perflab_tridiagonal_cotangent_vector", TridiagonalCotangentVector},
};

PyObject* targets(PyObject*, PyObject*) {
  PyObject* dict = PyDict_New();
  if (!dict) return nullptr;
  for (const auto& t : kTargets) {
    PyObject* cap = PyCapsule_New(reinterpret_cast<void*>(t.handler), nullptr, nullptr);
    if (!cap || PyDict_SetItemString(dict, t.name, cap) < 0) {
      Py_XDECREF(cap);
      Py_DECREF(dict);
      return nullptr;
    }
    Py_DECREF(cap);
  }
  return dict;
}

// A scipy cython_lapack/cython_blas capsule's pointer (the capsule's name is its C signature).
void* capsule_pointer(PyObject* dict, const char* key) {
  PyObject* cap = PyDict_GetItemString(dict, key);  // borrowed
  if (!cap) {
    PyErr_Format(PyExc_KeyError, "set_lapack: missing %s", key);
    return nullptr;
  }
  return PyCapsule_GetPointer(cap, PyCapsule_GetName(cap));
}

template <typename T>
bool load(PyObject* dict, char p) {
  auto get = [&](const char* name) { return capsule_pointer(dict, (std::string(1, p) + name).c_str()); };
  void* f[8] = {get("getrf"), get("getrs"), get("potrf"), get("potrs"), get("gttrf"), get("gttrs"), get("gemv"), get("trsv")};
  for (void* ptr : f) {
    if (!ptr) return false;
  }
  Lapack<T>::getrf = reinterpret_cast<typename Lapack<T>::getrf_t>(f[0]);
  Lapack<T>::getrs = reinterpret_cast<typename Lapack<T>::getrs_t>(f[1]);
  Lapack<T>::potrf = reinterpret_cast<typename Lapack<T>::potrf_t>(f[2]);
  Lapack<T>::potrs = reinterpret_cast<typename Lapack<T>::potrs_t>(f[3]);
  Lapack<T>::gttrf = reinterpret_cast<typename Lapack<T>::gttrf_t>(f[4]);
  Lapack<T>::gttrs = reinterpret_cast<typename Lapack<T>::gttrs_t>(f[5]);
  Lapack<T>::gemv = reinterpret_cast<typename Lapack<T>::gemv_t>(f[6]);
  Lapack<T>::trsv = reinterpret_cast<typename Lapack<T>::trsv_t>(f[7]);
  return true;
}

PyObject* set_lapack(PyObject*, PyObject* arg) {
  if (!PyDict_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "set_lapack expects a dict of name -> PyCapsule");
    return nullptr;
  }
  if (!load<double>(arg, 'd') || !load<float>(arg, 's')) return nullptr;
  Py_RETURN_NONE;
}

PyObject* chunked_calls(PyObject*, PyObject*) { return PyLong_FromLongLong(chunked_calls_count.load()); }

PyObject* grouped_systems(PyObject*, PyObject*) { return PyLong_FromLongLong(grouped_systems_count.load()); }

PyObject* lapack_ready(PyObject*, PyObject*) {
  return PyBool_FromLong(Lapack<double>::ready() && Lapack<float>::ready());
}

PyMethodDef kMethods[] = {
    {"targets", targets, METH_NOARGS, "dict: FFI target name -> PyCapsule of its XLA FFI handler."},
    {"set_lapack", set_lapack, METH_O,
     "Take LAPACK/BLAS pointers: a dict of '[ds]getrf', getrs, potrf, potrs, gttrf, gttrs, gemv, trsv -> "
     "scipy cython_lapack/cython_blas PyCapsules."},
    {"chunked_calls", chunked_calls, METH_NOARGS,
     "int: how many calls so far split their batch over the thread pool (for tests)."},
    {"grouped_systems", grouped_systems, METH_NOARGS,
     "int: how many tridiagonal JVPs so far were solved in interleaved groups (for tests)."},
    {"lapack_ready", lapack_ready, METH_NOARGS, "True once set_lapack has been called."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_ffi_kernels",
                       "XLA FFI handlers of perflab.linear_solve's ffi variant.", -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__ffi_kernels() { return PyModule_Create(&kModule); }
