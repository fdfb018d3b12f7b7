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
    floating* o, floating* st, floating* ks, floating* qs, floating* u,
    Py_ssize_t T, Py_ssize_t dk, Py_ssize_t dv, floating scale,
) noexcept nogil:
    # The state is held transposed (st = S^T, dv x dk) so that row j of st is column j of S:
    # then the rank-1 update of token t and the two dot products token t + 1 needs (S^T k and
    # S^T q) touch st in ONE pass, row by row, as contiguous vector loops whose sums stay in
    # registers. o_t = q_t^T S_t is q_t^T S_{t-1} + (q_t . k_t) u_t, which needs no second pass.
    # The last token has no successor; it passes k_t as "next" and the sums go unused.
    cdef Py_ssize_t t, i, j
    cdef floating b, qk, uj, s0, s1, s2, s3, u0, u1, u2, u3, k0, k1, k2, k3, q0, q1, q2, q3
    cdef floating* r0
    cdef floating* r1
    cdef floating* r2
    cdef floating* r3
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
        else:
            kn = kt
            qn = kt
        # Four rows at a time: eight independent sums per vector lane hide the FMA latency
        # that a single row's two running sums would expose, and k_t, k_next, q_next are
        # loaded once per four rows.
        j = 0
        while j + 4 <= dv:
            r0 = st + j * dk
            r1 = r0 + dk
            r2 = r1 + dk
            r3 = r2 + dk
            u0 = u[j]
            u1 = u[j + 1]
            u2 = u[j + 2]
            u3 = u[j + 3]
            k0 = 0
            k1 = 0
            k2 = 0
            k3 = 0
            q0 = 0
            q1 = 0
            q2 = 0
            q3 = 0
            for i in range(dk):
                s0 = r0[i] + u0 * kt[i]
                s1 = r1[i] + u1 * kt[i]
                s2 = r2[i] + u2 * kt[i]
                s3 = r3[i] + u3 * kt[i]
                r0[i] = s0
                r1[i] = s1
                r2[i] = s2
                r3[i] = s3
                k0 = k0 + s0 * kn[i]
                k1 = k1 + s1 * kn[i]
                k2 = k2 + s2 * kn[i]
                k3 = k3 + s3 * kn[i]
                q0 = q0 + s0 * qn[i]
                q1 = q1 + s1 * qn[i]
                q2 = q2 + s2 * qn[i]
                q3 = q3 + s3 * qn[i]
            ks[j] = k0
            ks[j + 1] = k1
            ks[j + 2] = k2
            ks[j + 3] = k3
            qs[j] = q0
            qs[j + 1] = q1
            qs[j + 2] = q2
            qs[j + 3] = q3
            j = j + 4
        while j < dv:
            r0 = st + j * dk
            u0 = u[j]
            k0 = 0
            q0 = 0
            for i in range(dk):
                s0 = r0[i] + u0 * kt[i]
                r0[i] = s0
                k0 = k0 + s0 * kn[i]
                q0 = q0 + s0 * qn[i]
            ks[j] = k0
            qs[j] = q0
            j = j + 1


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
    """Per-token recurrence for every head; writes o and the final state."""
    cdef Py_ssize_t bh = q.shape[0], T = q.shape[1], dk = q.shape[2], dv = v.shape[2]
    cdef Py_ssize_t n, tid
    if bh == 0 or T == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t i, j, sq = dk * dv
    cdef floating[:, ::1] work = np.empty((max(num_threads, 1), sq + 3 * dv), dtype=dtype)
    for n in prange(bh, nogil=True, num_threads=num_threads, schedule="static"):
        tid = threadid()
        memset(&work[tid, 0], 0, sq * sizeof(floating))
        _recurrent_head(
            &q[n, 0, 0], &k[n, 0, 0], &v[n, 0, 0], &beta[n, 0], &o[n, 0, 0], &work[tid, 0],
            &work[tid, sq], &work[tid, sq + dv], &work[tid, sq + 2 * dv], T, dk, dv, <floating>scale,
        )
        for i in range(dk):
            for j in range(dv):
                state[n, i, j] = work[tid, j * dk + i]


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
