"""The PyTorch variants (imported only when one is asked for: torch is an optional extra)."""

import functools

import torch
import torch.nn.functional as F


def torch_recurrent(q, k, v, beta):
    batch, heads, seq, dk = q.shape
    dv = v.shape[-1]
    bh = batch * heads
    q = (q * dk**-0.5).reshape(bh, seq, dk)
    k, v, beta = k.reshape(bh, seq, dk), v.reshape(bh, seq, dv), beta.reshape(bh, seq, 1)
    state = q.new_zeros(bh, dk, dv)
    out = q.new_empty(bh, seq, dv)
    for t in range(seq):
        kt = k[:, t : t + 1]  # [bh, 1, dk]
        u = beta[:, t : t + 1] * (v[:, t : t + 1] - torch.bmm(kt, state))
        state = torch.baddbmm(state, kt.transpose(1, 2), u)
        out[:, t : t + 1] = torch.bmm(q[:, t : t + 1], state)
    return out.reshape(batch, heads, seq, dv), state.reshape(batch, heads, dk, dv)


def _intra_chunk(q, k, v, beta, chunk_size: int):
    # q, k [B, H, T, dk] with T a multiple of chunk_size; returns the per-chunk W, U, P.
    batch, heads, seq, dk = q.shape
    n = seq // chunk_size
    q, k, v = (x.reshape(batch, heads, n, chunk_size, x.shape[-1]) for x in (q, k, v))
    beta = beta.reshape(batch, heads, n, chunk_size, 1)
    kb, vb = k * beta, v * beta
    eye = torch.eye(chunk_size, dtype=q.dtype, device=q.device)
    lmat = torch.tril(kb @ k.transpose(-1, -2), -1) + eye
    wu = torch.linalg.solve_triangular(lmat, torch.cat([kb, vb], -1), upper=False, unitriangular=True)
    p = torch.tril(q @ k.transpose(-1, -2))
    return q, k, wu[..., :dk], wu[..., dk:], p


def _inter_chunk(state, qn, kn, wn, un, pn):
    un = un - wn @ state
    out = qn @ state + pn @ un
    return state + kn.transpose(-1, -2) @ un, out


def _chunked(q, k, v, beta, chunk_size, intra, inter):
    batch, heads, seq, dk = q.shape
    dv = v.shape[-1]
    q = q * dk**-0.5
    pad = -seq % chunk_size
    if pad:
        # Zero k, v and beta leave the state unchanged (u = 0): padded tokens are exact no-ops.
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta = F.pad(beta, (0, pad))
    q, k, w, u, p = intra(q, k, v, beta, chunk_size)
    state = q.new_zeros(batch, heads, dk, dv)
    outs = []
    for i in range(q.shape[2]):
        state, out = inter(state, q[:, :, i], k[:, :, i], w[:, :, i], u[:, :, i], p[:, :, i])
        outs.append(out)
    out = torch.stack(outs, 2).reshape(batch, heads, seq + pad, dv)[:, :, :seq]
    return out, state


def torch_chunked(q, k, v, beta, chunk_size):
    return _chunked(q, k, v, beta, chunk_size, _intra_chunk, _inter_chunk)


@functools.lru_cache(maxsize=None)
def _compiled():
    # The chunk loop stays in Python (an unrolled 64-step graph compiles for minutes); the
    # intra-chunk work and the per-chunk step are compiled once per shape.
    return (
        torch.compile(_intra_chunk, dynamic=False, fullgraph=True),
        torch.compile(_inter_chunk, dynamic=False, fullgraph=True),
    )


def torch_compiled(q, k, v, beta, chunk_size):
    intra, inter = _compiled()
    return _chunked(q, k, v, beta, chunk_size, intra, inter)
