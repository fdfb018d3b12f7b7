// XLA FFI handlers of perflab.linear_solve's "ffi" variant: a linear solve and its JVP
// x' = A^-1 (b' - A' x) in one custom call, the factorisation shared by primal and tangent; and
// the reverse-mode kernels that keep the factorisation for the transposed solve.
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

#include "batching.h"
#include "solvers.h"

namespace ffi = xla::ffi;

namespace perflab {

enum class Kind { kSolve, kJvp, kJvpVector };

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


}  // namespace perflab

#pragma GCC visibility push(default)
namespace perflab {

#define PERFLAB_HANDLER(NAME, SOLVER, KIND, CHOL)                                                    \
  static ffi::Error NAME##_impl(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) { \
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

}  // namespace perflab
#pragma GCC visibility pop

namespace perflab {

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


}  // namespace perflab

#pragma GCC visibility push(default)
namespace perflab {

#define PERFLAB_REVERSE_HANDLER(NAME, SOLVER, KIND, CHOL)                                            \
  static ffi::Error NAME##_impl(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) { \
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

}  // namespace perflab
#pragma GCC visibility pop
