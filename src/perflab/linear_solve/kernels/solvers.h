// The solvers of the kernels, one system (or a group of G systems) at a time:
// Layout: JAX arrays are row-major, LAPACK column-major. A row-major (n, n) matrix is the
// column-major A^T, so LU factorises A^T and solves with trans = 'T'; Cholesky needs no care
// (A is symmetric). A tridiagonal operator is three bands, the same in either order.
#pragma once

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

#include "lapack.h"

namespace perflab {

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

// ------------------------------------------------------------------ reverse mode

// The reverse-mode kernels keep each system's factors in one (rows, n) buffer F, in the
// operands' dtype (pivots stored as values): LU: the getrf factors of row-major A (column-major
// A^T), then the pivots (rows n + 1); Cholesky: the potrf factor (rows n); tridiagonal: gttrf's
// dl, d, du, du2, the pivots and 1 / d (rows 6).

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

}  // namespace perflab
