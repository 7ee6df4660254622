"""The Student t distribution without scipy: CDF, survival, density and quantile.

Computed from the regularised incomplete beta function (Numerical Recipes' continued fraction,
vectorised); tests check it against scipy. Pure numpy, used by ``stats``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- Student t


def _betacf(a: np.ndarray, b: np.ndarray, x: np.ndarray, max_iter: int = 400) -> np.ndarray:
    """Continued fraction of the incomplete beta function (modified Lentz), elementwise."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return h


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def betainc(a: Any, b: Any, x: Any) -> np.ndarray:
    """Regularised incomplete beta function I_x(a, b), elementwise over broadcast arrays."""
    a, b, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(x, float))
    a, b, x = a.astype(float), b.astype(float), np.clip(x.astype(float), 0.0, 1.0)
    inner = (x > 0) & (x < 1)
    xs = np.where(inner, x, 0.5)
    with np.errstate(divide="ignore"):
        log_front = (_lgamma(a + b) - _lgamma(a) - _lgamma(b)
                     + a * np.log(xs) + b * np.log1p(-xs))
    front = np.exp(log_front)
    direct = xs < (a + 1.0) / (a + b + 2.0)
    # Use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) where the fraction converges slowly.
    aa, bb, xx = np.where(direct, a, b), np.where(direct, b, a), np.where(direct, xs, 1.0 - xs)
    cf = _betacf(aa, bb, xx)
    value = np.where(direct, front * cf / a, 1.0 - front * cf / b)
    return np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, value))


def t_cdf(t: Any, df: Any) -> np.ndarray:
    """CDF of Student's t with ``df`` (real, > 0) degrees of freedom."""
    t, df = np.broadcast_arrays(np.asarray(t, float), np.asarray(df, float))
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return np.where(t >= 0, 1.0 - tail, tail)


def t_sf(t: Any, df: Any) -> np.ndarray:
    """Upper tail P(T > t), accurate for large t (no 1 - cdf cancellation)."""
    t, df = np.broadcast_arrays(np.asarray(t, float), np.asarray(df, float))
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return np.where(t >= 0, tail, 1.0 - tail)


def t_pdf(t: Any, df: Any) -> np.ndarray:
    """Density of Student's t."""
    t, df = np.broadcast_arrays(np.asarray(t, float), np.asarray(df, float))
    log_c = _lgamma((df + 1) / 2) - _lgamma(df / 2) - 0.5 * np.log(df * math.pi)
    return np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))


def _t_ppf_start(z: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Cornish-Fisher expansion of the t quantile (Abramowitz & Stegun 26.7.5)."""
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_ppf(p: Any, df: Any) -> np.ndarray:
    """Quantile of Student's t, exact to ~1e-12, vectorised.

    df >= 3: Cornish-Fisher start and Newton steps on the exact CDF (converges in a few steps).
    df < 3, where the tails are Cauchy-heavy and Newton can overshoot: bisection on t/(1+t).
    """
    p, df = np.broadcast_arrays(np.asarray(p, float), np.asarray(df, float))
    upper = np.where(p >= 0.5, p, 1.0 - p)
    out = np.empty_like(upper)
    big = df >= 3
    if big.any():
        from statistics import NormalDist

        u, d = upper[big], df[big]
        z = np.array([NormalDist().inv_cdf(float(x)) for x in u.ravel()]).reshape(u.shape)
        t = _t_ppf_start(z, d)
        for _ in range(6):
            step = (t_cdf(t, d) - u) / np.maximum(t_pdf(t, d), 1e-300)
            t = t - step
            if np.all(np.abs(step) < 1e-13 * np.maximum(1.0, np.abs(t))):
                break
        out[big] = t
    small = ~big
    if small.any():
        u, d = upper[small], df[small]
        lo, hi = np.zeros_like(u), np.ones_like(u)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = t_cdf(mid / (1.0 - mid), d) < u
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        mid = 0.5 * (lo + hi)
        out[small] = mid / (1.0 - mid)
    return np.where(p >= 0.5, out, -out)
