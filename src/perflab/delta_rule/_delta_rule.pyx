"""Delta-rule kernels over C-contiguous float32/float64 buffers, parallel over batch x heads.

Layout (shared with `perflab.delta_rule._cython`): q, k are [BH, T, Dk], v and o [BH, T, Dv],
beta [BH, T], the state [BH, Dk, Dv], all C-contiguous and of one dtype; q is scaled by `scale`
inside the kernels. Every (batch, head) pair is independent: `prange` hands whole heads to at most
`num_threads` OpenMP threads, each with its own workspace row, and BLAS (scipy's, pinned to one
thread by the caller's environment) runs inside one head.

These are the raw kernels: shapes, dtypes and contiguity are checked by the callers.
"""

import numpy as np

cimport cython
from cython.parallel cimport prange, threadid
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, dtrsm, sgemm, strsm

ctypedef fused floating:
    float
    double


cdef inline void _gemm(
    char ta, char tb, int m, int n, int kk, floating alpha,
    const floating* a, int lda, const floating* b, int ldb,
    floating beta, floating* c, int ldc,
) noexcept nogil:
    # Row-major C (m x n) = alpha op(A) op(B) + beta C, as the column-major product
    # C^T = op(B)^T op(A)^T: the operands swap and the transpose flags carry over unchanged.
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &kk, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &kk, &alpha, <double*>b, &ldb, <double*>a, &lda, &beta, c, &ldc)


cdef inline void _unit_lower_solve(int c, int ncols, const floating* lmat, int ldl, floating* x, int ldx) noexcept nogil:
    # X <- L^-1 X with L (c x c, row-major) unit lower triangular, X (c x ncols, row-major).
    # Column-major, the stored L is L^T (upper) and X is X^T, so this is X^T <- X^T (L^T)^-1.
    cdef char side = c'R'
    cdef char uplo = c'U'
    cdef char trans = c'N'
    cdef char diag = c'U'
    cdef floating one = 1
    if floating is float:
        strsm(&side, &uplo, &trans, &diag, &ncols, &c, &one, <float*>lmat, &ldl, x, &ldx)
    else:
        dtrsm(&side, &uplo, &trans, &diag, &ncols, &c, &one, <double*>lmat, &ldl, x, &ldx)


cdef void _recurrent_head(
    const floating* q, const floating* k, const floating* v, const floating* beta,
    floating* o, floating* state, floating* ks, floating* qs, floating* u,
    Py_ssize_t T, Py_ssize_t dk, Py_ssize_t dv, floating scale,
) noexcept nogil:
    # One pass over S per token: the rank-1 update of token t is fused with the reads of
    # S^T k and S^T q that token t + 1 needs, so the 64 x 64 state streams through L1 once.
    # o_t = q_t^T S_t is taken as q_t^T S_{t-1} + (q_t . k_t) u_t, which needs no second pass.
    cdef Py_ssize_t t, i, j
    cdef floating b, qk, uj, a, cn, en, s
    cdef floating* row
    cdef const floating* kt
    cdef const floating* kn
    cdef const floating* qn
    memset(ks, 0, dv * sizeof(floating))
    memset(qs, 0, dv * sizeof(floating))
    for t in range(T):
        kt = k + t * dk
        b = beta[t]
        qk = 0
        for i in range(dk):
            qk = qk + q[t * dk + i] * kt[i]
        qk = qk * scale
        for j in range(dv):
            uj = b * (v[t * dv + j] - ks[j])
            u[j] = uj
            o[t * dv + j] = scale * qs[j] + qk * uj
        if t + 1 < T:
            kn = k + (t + 1) * dk
            qn = q + (t + 1) * dk
            memset(ks, 0, dv * sizeof(floating))
            memset(qs, 0, dv * sizeof(floating))
            for i in range(dk):
                row = state + i * dv
                a = kt[i]
                cn = kn[i]
                en = qn[i]
                for j in range(dv):
                    s = row[j] + a * u[j]
                    row[j] = s
                    ks[j] = ks[j] + cn * s
                    qs[j] = qs[j] + en * s
        else:
            for i in range(dk):
                row = state + i * dv
                a = kt[i]
                for j in range(dv):
                    row[j] = row[j] + a * u[j]


def recurrent(
    const floating[:, :, ::1] q,
    const floating[:, :, ::1] k,
    const floating[:, :, ::1] v,
    const floating[:, ::1] beta,
    floating[:, :, ::1] o,
    floating[:, :, ::1] state,
    double scale,
    int num_threads,
):
    """Per-token recurrence for every head; writes o and the final state (state must start at 0)."""
    cdef Py_ssize_t bh = q.shape[0], T = q.shape[1], dk = q.shape[2], dv = v.shape[2]
    cdef Py_ssize_t n, tid
    if bh == 0 or T == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] work = np.empty((max(num_threads, 1), 3 * dv), dtype=dtype)
    for n in prange(bh, nogil=True, num_threads=num_threads, schedule="static"):
        tid = threadid()
        _recurrent_head(
            &q[n, 0, 0], &k[n, 0, 0], &v[n, 0, 0], &beta[n, 0], &o[n, 0, 0], &state[n, 0, 0],
            &work[tid, 0], &work[tid, dv], &work[tid, 2 * dv], T, dk, dv, <floating>scale,
        )


cdef void _chunked_head(
    const floating* q, const floating* k, const floating* v, const floating* beta,
    floating* o, floating* state, floating* wu, floating* lmat, floating* pmat,
    Py_ssize_t T, int dk, int dv, int chunk, floating scale,
) noexcept nogil:
    # Per chunk of c <= chunk tokens (the last may be short, so nothing is padded):
    #   L = I + tril(kb k^T, -1);  [W | U] = L^-1 [kb | vb]     (one unit-triangular solve)
    #   U <- U - W S;  O = q S + tril(q k^T) U;  S <- S + k^T U
    # [W | U] share one c x (dk + dv) buffer so one trsm serves both.
    cdef Py_ssize_t r0, t, j
    cdef int c, i, ld = dk + dv
    cdef floating b
    cdef const floating* qc
    cdef const floating* kc
    cdef floating* oc
    r0 = 0
    while r0 < T:
        c = <int>min(<Py_ssize_t>chunk, T - r0)
        qc = q + r0 * dk
        kc = k + r0 * dk
        oc = o + r0 * dv
        for t in range(c):
            b = beta[r0 + t]
            for j in range(dk):
                wu[t * ld + j] = b * kc[t * dk + j]
            for j in range(dv):
                wu[t * ld + dk + j] = b * v[(r0 + t) * dv + j]
        # L's strictly lower part is kb k^T's; its diagonal and upper part are ignored by the solve.
        _gemm(c'N', c'T', c, c, dk, <floating>1, wu, ld, kc, dk, <floating>0, lmat, chunk)
        _unit_lower_solve(c, ld, lmat, chunk, wu, ld)
        _gemm(c'N', c'N', c, dv, dk, <floating>-1, wu, ld, state, dv, <floating>1, wu + dk, ld)
        _gemm(c'N', c'N', c, dv, dk, scale, qc, dk, state, dv, <floating>0, oc, dv)
        _gemm(c'N', c'T', c, c, dk, scale, qc, dk, kc, dk, <floating>0, pmat, chunk)
        for i in range(c):
            for j in range(i + 1, c):
                pmat[i * chunk + j] = 0
        _gemm(c'N', c'N', c, dv, c, <floating>1, pmat, chunk, wu + dk, ld, <floating>1, oc, dv)
        _gemm(c'T', c'N', dk, dv, c, <floating>1, kc, dk, wu + dk, ld, <floating>1, state, dv)
        r0 = r0 + c


def chunked(
    const floating[:, :, ::1] q,
    const floating[:, :, ::1] k,
    const floating[:, :, ::1] v,
    const floating[:, ::1] beta,
    floating[:, :, ::1] o,
    floating[:, :, ::1] state,
    double scale,
    int chunk_size,
    int num_threads,
):
    """Chunked (UT-transform) form with BLAS-3 for every head; writes o and the final state."""
    cdef Py_ssize_t bh = q.shape[0], T = q.shape[1]
    cdef int dk = q.shape[2], dv = v.shape[2], cs = chunk_size
    cdef Py_ssize_t n, tid
    cdef Py_ssize_t wsize = <Py_ssize_t>cs * (dk + dv)
    cdef Py_ssize_t csq = <Py_ssize_t>cs * cs
    if bh == 0 or T == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] work = np.empty((max(num_threads, 1), wsize + 2 * csq), dtype=dtype)
    for n in prange(bh, nogil=True, num_threads=num_threads, schedule="static"):
        tid = threadid()
        _chunked_head(
            &q[n, 0, 0], &k[n, 0, 0], &v[n, 0, 0], &beta[n, 0], &o[n, 0, 0], &state[n, 0, 0],
            &work[tid, 0], &work[tid, wsize], &work[tid, wsize + csq], T, dk, dv, cs,
            <floating>scale,
        )
