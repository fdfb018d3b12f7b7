// XLA FFI handlers of the heat equation's factor_once_ffi variant: substitutions with stored
// Thomas factors (forward mode, one call per step) and the whole time loop and its adjoint
// (reverse mode, one call each).
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

namespace perflab {

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


}  // namespace perflab

#pragma GCC visibility push(default)
namespace perflab {

XLA_FFI_DEFINE_HANDLER_SYMBOL(ThomasSubstitute, ThomasSubstitute_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

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

}  // namespace perflab
#pragma GCC visibility pop
