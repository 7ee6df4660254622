"""Sequential verdicts: decide after each pair of seeds, with error rates that hold under peeking.

Pure functions over arrays, like :mod:`harness.compare.stats` (no I/O, no plotting, numpy only).

Why this design (docs/statistics.md, "Sequential plans", has the evidence):

* A plan runs seeds in interleaved pairs and looks at the data after each pair from the third on.
  Testing at 95 % at every look would inflate false verdicts (the peeking problem), so each look
  uses a **repeated confidence interval** of a group-sequential design (Jennison & Turnbull 1989;
  *Group Sequential Methods with Applications to Clinical Trials*, 2000, ch. 9): intervals whose
  coverage holds *simultaneously* over all looks of the plan, so any stopping rule built on them
  (here: "stop once the interval clears the noise band or fits inside it") keeps its error rate.
* The boundaries come from a Lan-DeMets alpha-spending function over the planned maximum
  (Lan & DeMets 1983), computed by the Armitage-McPherson-Rowe recursion on a Simpson grid.
  The default is the Pocock-type function ``alpha * ln(1 + (e - 1) t)``: with 3 seeds a mode the
  t interval has only 4 degrees of freedom, and O'Brien-Fleming-type spending (also offered here)
  leaves so little alpha for the first looks that a 20 % change could never be settled at 3 seeds.
* The variance is unknown, so each look's nominal level is turned into a Student-t quantile with
  that look's degrees of freedom (J&T 2000, section 3.8 and 9.3), the pooled two-sample t on the
  log per-run statistic (equal run counts by construction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np

from harness.compare.tdist import t_ppf

ALPHA = 0.05
SPENDING = ("pocock", "obrien-fleming")
CONTINUE, FASTER, SLOWER, IN_BAND, UNRESOLVED = (
    "continue", "FASTER", "SLOWER", "within noise", "unresolved")
STATE_CODES = (CONTINUE, FASTER, SLOWER, IN_BAND, UNRESOLVED)
_NORMAL = NormalDist()
_erfc = np.vectorize(math.erfc, otypes=[float])


@dataclass(frozen=True)
class Design:
    """A sequential plan fixed in advance: looks after ``first_look``..``max_seeds`` seeds a mode."""

    max_seeds: int = 10
    first_look: int = 3
    alpha: float = ALPHA
    spending: str = "pocock"
    noise_band: float = 0.02

    def __post_init__(self) -> None:
        if self.first_look < 2 or self.max_seeds < self.first_look:
            raise ValueError(f"need 2 <= first_look <= max_seeds (got {self.first_look}, {self.max_seeds})")
        if self.spending not in SPENDING:
            raise ValueError(f"spending must be one of {', '.join(SPENDING)} (got {self.spending!r})")
        if not 0 < self.alpha < 1 or not 0 <= self.noise_band < 1:
            raise ValueError("alpha must be in (0, 1) and noise_band in [0, 1)")

    @property
    def looks(self) -> list[int]:
        """Seeds per mode at each look."""
        return list(range(self.first_look, self.max_seeds + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Design":
        return cls(**{k: data[k] for k in ("max_seeds", "first_look", "alpha", "spending", "noise_band")
                      if k in data})


def spent(spending: str, alpha: float, t: float) -> float:
    """Cumulative two-sided alpha spent at information fraction ``t`` (Lan-DeMets functions).

    Each side spends alpha/2 (two one-sided designs), the convention of gsDesign and J&T.
    """
    t = min(max(t, 0.0), 1.0)
    if t == 0.0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * t)
    z = _NORMAL.inv_cdf(1.0 - alpha / 4.0)
    return 2.0 * (2.0 - 2.0 * _NORMAL.cdf(z / math.sqrt(t)))


def _simpson(lo: float, hi: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid and Simpson weights on [lo, hi] with ``m`` (odd) points."""
    x = np.linspace(lo, hi, m)
    w = np.ones(m)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (hi - lo) / (3.0 * (m - 1))


def _two_tail(x: float, u: np.ndarray, wf: np.ndarray, sd: float) -> float:
    """P(|S_k| > x, no earlier crossing) from the previous look's weighted density ``wf`` on ``u``."""
    s2 = sd * math.sqrt(2.0)
    return float(np.sum(wf * 0.5 * (_erfc((x - u) / s2) + _erfc((x + u) / s2))))


@lru_cache(maxsize=64)
def _boundaries(fractions: tuple[float, ...], spending: str, alpha: float, m: int = 401) -> tuple[float, ...]:
    """Z boundaries c_k with P(first |Z_k| > c_k at look k) = alpha spent between looks (two-sided)."""
    out: list[float] = []
    u = wf = None
    prev_t = prev_a = 0.0
    for t in fractions:
        target = spent(spending, alpha, t) - prev_a
        sd = math.sqrt(t - prev_t)
        if u is None:  # first look: S_1 ~ N(0, t_1)
            c = _NORMAL.inv_cdf(1.0 - target / 2.0)
        else:
            lo, hi = 0.0, 40.0
            for _ in range(60):  # the tail mass falls with x: bisection on the boundary of S_k
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _two_tail(mid, u, wf, sd) > target else (lo, mid)
            c = 0.5 * (lo + hi) / math.sqrt(t)
        out.append(c)
        x = c * math.sqrt(t)
        grid, w = _simpson(-x, x, m)
        if u is None:
            dens = np.exp(-grid**2 / (2 * t)) / math.sqrt(2 * math.pi * t)
        else:
            kern = np.exp(-((grid[:, None] - u[None, :]) ** 2) / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))
            dens = kern @ wf
        u, wf = grid, w * dens
        prev_t, prev_a = t, spent(spending, alpha, t)
    return tuple(out)


def boundaries(design: Design) -> np.ndarray:
    """Normal-theory boundaries (|Z| scale), one per look of ``design``."""
    fractions = tuple(n / design.max_seeds for n in design.looks)
    return np.array(_boundaries(fractions, design.spending, design.alpha))


def nominal_levels(design: Design) -> np.ndarray:
    """Two-sided nominal significance level of each look (what the t quantiles are taken at)."""
    return np.array([2.0 * (1.0 - _NORMAL.cdf(float(c))) for c in boundaries(design)])


def look_arrays(log_base: Any, log_cand: Any, design: Design) -> dict[str, np.ndarray]:
    """Repeated confidence interval and state at the look after ``n`` seeds (n = last-axis length).

    Vectorised over leading axes (the simulation passes thousands of plans at once). Inputs are
    log per-run *speed* statistics (higher is faster); returns ``diff``, ``low``, ``high`` (log
    speed ratio candidate / baseline) and ``code`` (index into :data:`STATE_CODES`).
    """
    x, y = np.asarray(log_base, float), np.asarray(log_cand, float)
    n = x.shape[-1]
    if y.shape[-1] != n or n not in design.looks:
        raise ValueError(f"a look needs {design.first_look}..{design.max_seeds} runs in each mode (got "
                         f"{n} and {y.shape[-1]})")
    level = nominal_levels(design)[design.looks.index(n)]
    pooled = (x.var(axis=-1, ddof=1) + y.var(axis=-1, ddof=1)) / 2.0
    se = np.sqrt(pooled * 2.0 / n)
    diff = y.mean(axis=-1) - x.mean(axis=-1)
    half = float(t_ppf(1.0 - level / 2.0, 2.0 * n - 2.0)) * se
    low, high = diff - half, diff + half
    return {"diff": diff, "low": low, "high": high, "code": state_codes(low, high, n, design)}


def state_codes(low: Any, high: Any, n: int, design: Design) -> np.ndarray:
    """Where a plan stands from its log speed interval: resolved one way, in the band, or not yet."""
    up, down = math.log1p(design.noise_band), math.log1p(-design.noise_band)
    low, high = np.asarray(low, float), np.asarray(high, float)
    idle = UNRESOLVED if n >= design.max_seeds else CONTINUE
    codes = np.full(np.broadcast(low, high).shape, STATE_CODES.index(idle))
    codes = np.where((low >= down) & (high <= up), STATE_CODES.index(IN_BAND), codes)
    codes = np.where(low > up, STATE_CODES.index(FASTER), codes)
    return np.where(high < down, STATE_CODES.index(SLOWER), codes)


def run_plans(log_base: Any, log_cand: Any, design: Design) -> dict[str, np.ndarray]:
    """Apply the stopping rule to many plans at once (arrays of shape ``(plans, max_seeds)``).

    Returns ``seeds`` (seeds a mode when the plan stopped), ``code`` (its final state), and
    ``covered`` (whether every interval the plan looked at held the ``truth`` — filled by the
    caller via :func:`coverage`). The fast in-process check of the rule (benchmarks, tests).
    """
    x, y = np.asarray(log_base, float), np.asarray(log_cand, float)
    plans = x.shape[0]
    seeds = np.full(plans, design.max_seeds)
    code = np.full(plans, STATE_CODES.index(UNRESOLVED))
    done = np.zeros(plans, bool)
    lows, highs = [], []
    for n in design.looks:
        r = look_arrays(x[:, :n], y[:, :n], design)
        lows.append(np.where(done, -np.inf, r["low"]))
        highs.append(np.where(done, np.inf, r["high"]))
        stop = ~done & (r["code"] != STATE_CODES.index(CONTINUE))
        seeds[stop], code[stop] = n, r["code"][stop]
        done |= stop
    return {"seeds": seeds, "code": code, "low": np.array(lows).T, "high": np.array(highs).T}


def coverage(plans: dict[str, np.ndarray], truth: float) -> np.ndarray:
    """Per plan: did every interval it looked at (before stopping) contain the true log ratio?"""
    return np.all((plans["low"] <= truth) & (truth <= plans["high"]), axis=1)


def wrong_verdict(code: np.ndarray, truth: float, noise_band: float) -> np.ndarray:
    """Per plan: a resolved verdict that contradicts the true log speed ratio ``truth``.

    FASTER (SLOWER) is wrong unless the truth lies beyond the band on that side; "within noise"
    is wrong when the truth lies outside the band. Unresolved plans are never wrong, only slow.
    """
    up, down = math.log1p(noise_band), math.log1p(-noise_band)
    c = np.asarray(code)
    wrong = (c == STATE_CODES.index(FASTER)) & (truth <= up)
    wrong |= (c == STATE_CODES.index(SLOWER)) & (truth >= down)
    return wrong | ((c == STATE_CODES.index(IN_BAND)) & ((truth > up) | (truth < down)))


@dataclass(frozen=True)
class Look:
    """One look of a sequential plan: the speed ratio, its repeated interval and the decision."""

    seeds: int
    ratio: float  # speed ratio candidate / baseline (> 1: candidate faster)
    low: float
    high: float
    state: str  # one of STATE_CODES

    @property
    def resolved(self) -> bool:
        return self.state in (FASTER, SLOWER, IN_BAND)

    @property
    def stop(self) -> bool:
        return self.state != CONTINUE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Look":
        return cls(int(data["seeds"]), float(data["ratio"]), float(data["low"]), float(data["high"]),
                   str(data["state"]))


def decide(baseline_speed: Any, candidate_speed: Any, design: Design) -> Look:
    """The look after n seeds a mode, from per-run *speed* statistics (higher is faster, > 0).

    For a lower-is-better statistic (a time) pass its reciprocal. Raises ValueError when the
    run counts differ or are not a look of ``design``.
    """
    x, y = np.asarray(baseline_speed, float), np.asarray(candidate_speed, float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("speed statistics must be positive")
    r = look_arrays(np.log(x), np.log(y), design)
    return Look(x.size, float(np.exp(r["diff"])), float(np.exp(r["low"])), float(np.exp(r["high"])),
                STATE_CODES[int(r["code"])])


def _pct(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100:+.1f}".replace("-", "\u2212")


def interval_text(look: Look) -> str:
    """``−6.1 % [−9.8, −2.2]``: the speed change and its repeated interval, in percent."""
    return f"{_pct(look.ratio)} % [{_pct(look.low)}, {_pct(look.high)}]"


def progress_line(look: Look, design: Design) -> str:
    """Where the plan stands, e.g. ``after 4 seeds: −6.1 % [−9.8, −2.2] — resolved: SLOWER``."""
    head = f"after {look.seeds} seeds: {interval_text(look)}"
    band = f"\u00b1{design.noise_band * 100:g} %"
    if look.state in (FASTER, SLOWER):
        tail = f"resolved: {look.state}"
    elif look.state == IN_BAND:
        tail = f"resolved: within noise ({band})"
    elif look.state == UNRESOLVED:
        tail = f"not resolved at the maximum of {design.max_seeds} seeds"
    else:
        tail = (f"not resolved yet (needs the interval beyond or inside {band}); next: pair {look.seeds + 1} "
                f"of at most {design.max_seeds}")
    return f"{head} \u2014 {tail}"
