import numpy as np

from ._checks import check_inputs


def reference_delta_rule(q, k, v, beta):
    """The naive per-token delta-rule recurrence in numpy float64: the ground truth.

    For every batch and head, with S (dk x dv) starting at zero and q scaled by dk**-0.5::

        u_t = beta_t (v_t - k_t S);  S <- S + k_t^T u_t;  o_t = q_t S

    Arguments:
        q, k: arrays of shape [batch, heads, seq, dk].
        v: array of shape [batch, heads, seq, dv].
        beta: array of shape [batch, heads, seq].

    Returns:
        ``(o, state)``: float64 numpy arrays, o [batch, heads, seq, dv], the final state
        [batch, heads, dk, dv].
    """
    batch, heads, seq, dk, dv, _ = check_inputs(q, k, v, beta)
    q, k, v, beta = (np.asarray(x, dtype=np.float64) for x in (q, k, v, beta))
    q = q * dk**-0.5
    state = np.zeros((batch, heads, dk, dv))
    out = np.zeros((batch, heads, seq, dv))
    for b in range(batch):
        for h in range(heads):
            s = state[b, h]
            for t in range(seq):
                u = beta[b, h, t] * (v[b, h, t] - k[b, h, t] @ s)
                s += np.outer(k[b, h, t], u)
                out[b, h, t] = q[b, h, t] @ s
    return out, state
