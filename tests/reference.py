"""Direct NumPy computations of the paper's equations, used as test oracles.

Written loop-by-loop from the equations, independent of the layers' einsum code.
"""

import numpy as np


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def axial_attention_1d(x, w_qkv, heads, key_depth, value_depth, rq, rk, rv, span=None):
    """Eq. 4 along the second-to-last axis of x: (lines, length, channels).

    rq, rk, rv: functions offset -> vector (or None for a switched-off term).
    """
    lines, length, _ = x.shape
    d_q, d_v = key_depth // heads, value_depth // heads
    out = np.zeros((lines, length, value_depth))
    for n in range(lines):
        qkv = x[n] @ w_qkv
        q, k, v = qkv[:, :key_depth], qkv[:, key_depth:2 * key_depth], qkv[:, 2 * key_depth:]
        for h in range(heads):
            qh, kh, vh = q[:, h * d_q:(h + 1) * d_q], k[:, h * d_q:(h + 1) * d_q], v[:, h * d_v:(h + 1) * d_v]
            for j in range(length):
                keys = [b for b in range(length) if span is None or abs(b - j) <= span // 2]
                logits = []
                for b in keys:
                    s = qh[j] @ kh[b]
                    if rq is not None:
                        s += qh[j] @ rq(b - j)
                    if rk is not None:
                        s += kh[b] @ rk(b - j)
                    logits.append(s)
                a = softmax(np.array(logits))
                y = np.zeros(d_v)
                for weight, b in zip(a, keys):
                    y += weight * (vh[b] + (rv(b - j) if rv is not None else 0))
                out[n, j, h * d_v:(h + 1) * d_v] = y
    return out


def local_attention_2d(x, w_qkv, heads, key_depth, value_depth, window, rq, rk, rv):
    """Eq. 3 (Eq. 2 when rk and rv are None) for x: (height, width, channels).

    rq, rk, rv: functions (row offset, column offset) -> vector, or None.
    Keys outside the image are left out.
    """
    height, width, _ = x.shape
    d_q, d_v = key_depth // heads, value_depth // heads
    half = window // 2
    qkv = x @ w_qkv
    q, k, v = qkv[..., :key_depth], qkv[..., key_depth:2 * key_depth], qkv[..., 2 * key_depth:]
    out = np.zeros((height, width, value_depth))
    for i in range(height):
        for j in range(width):
            keys = [(a, b) for a in range(i - half, i + half + 1) for b in range(j - half, j + half + 1)
                    if 0 <= a < height and 0 <= b < width]
            for h in range(heads):
                sq, sk, sv = slice(h * d_q, (h + 1) * d_q), slice(h * d_q, (h + 1) * d_q), slice(h * d_v, (h + 1) * d_v)
                logits = []
                for a, b in keys:
                    s = q[i, j, sq] @ k[a, b, sk]
                    if rq is not None:
                        s += q[i, j, sq] @ rq(a - i, b - j)
                    if rk is not None:
                        s += k[a, b, sk] @ rk(a - i, b - j)
                    logits.append(s)
                att = softmax(np.array(logits))
                y = np.zeros(d_v)
                for weight, (a, b) in zip(att, keys):
                    y += weight * (v[a, b, sv] + (rv(a - i, b - j) if rv is not None else 0))
                out[i, j, sv] = y
    return out
