"""Calibration: does a model's confidence match how often it is right?

Metrics (ECE, MCE, NLL, Brier), the reliability diagram and confidence histogram,
and temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks").

Conventions shared by every function here:

- ``probs``  (N, C) softmax probabilities, rows sum to 1.
- ``logits`` (N, C) unnormalized scores.
- ``labels`` (N,) integer class ids in [0, C).
- Inputs may be numpy arrays or torch tensors (any device); metrics are computed
  in numpy float64 and returned as Python floats. Rates are fractions in [0, 1],
  not percent.
- Confidence = the top-class probability, ``probs.max(axis=1)``.
- Confidence bins split (0, 1] into ``n_bins`` equal-width intervals (lo, hi], as in
  Guo et al.: a confidence exactly on an edge belongs to the bin below it. A softmax
  never outputs confidence 0 (it is at least 1/C), so the open left end loses nothing;
  a 0 passed in anyway is put in the first bin.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

# Smallest probability used inside log(): keeps NLL finite when a model puts
# exactly 0 on the true class (float32 softmax underflows for large logit gaps).
NLL_CLIP = 1e-12

# Temperature search range; values beyond it mean the validation set is degenerate
# (e.g. every sample correct, which pushes T towards 0).
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """Convert a numpy array, torch tensor (any device) or sequence to numpy; dtype=None keeps it."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_scores_labels(scores, labels, name: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    """Return (scores float64 (N, C), labels int64 (N,)) after shape and range checks."""
    scores = to_numpy(scores)
    labels = to_numpy(labels, dtype=np.int64)
    if scores.ndim != 2:
        raise ValueError(f"{name} must be (N, C), got shape {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must be ({scores.shape[0]},) to match {name}, got {labels.shape}")
    if scores.shape[0] == 0:
        raise ValueError("need at least one sample")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got [{labels.min()}, {labels.max()}]")
    return scores, labels


def softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64; (N, C) logits -> (N, C) probabilities."""
    z = to_numpy(logits)
    z = z - z.max(axis=axis, keepdims=True)  # shift so exp() cannot overflow
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------- metrics


def reliability_bins(probs, labels, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Group samples by confidence into equal-width bins; the single place binning lives.

    Bins are (lo, hi] intervals over (0, 1] (see the module docstring).

    Returns a dict of numpy arrays:
        ``edges``      (n_bins + 1,) bin edges, 0 to 1.
        ``counts``     (n_bins,) int, samples per bin; sums to N.
        ``accuracy``   (n_bins,) fraction correct per bin, NaN for empty bins.
        ``confidence`` (n_bins,) mean confidence per bin, NaN for empty bins.
    """
    probs, labels = _check_scores_labels(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" puts a value equal to an edge into the bin that edge closes: (lo, hi].
    bin_index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)

    counts = np.bincount(bin_index, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN marks empty bins
        accuracy = correct_sum / counts
        mean_confidence = confidence_sum / counts
    return {"edges": edges, "counts": counts, "accuracy": accuracy, "confidence": mean_confidence}


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE: the sample-weighted mean gap between accuracy and confidence over bins.

    ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|, with equal-width (lo, hi] bins
    over (0, 1] (Guo et al. 2017). Returns a fraction in [0, 1] (multiply by 100 for %).
    """
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins["counts"] > 0
    weights = bins["counts"][filled] / bins["counts"].sum()
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(weights * gaps))


def maximum_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """MCE: the largest |accuracy - confidence| over non-empty bins; a fraction in [0, 1]."""
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins["counts"] > 0
    return float(np.max(np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def negative_log_likelihood(probs, labels) -> float:
    """Mean of -log p(true class) over samples, in nats; p is clipped at NLL_CLIP."""
    probs, labels = _check_scores_labels(probs, labels)
    p_true = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p_true, NLL_CLIP, 1.0))))


def brier_score(probs, labels) -> float:
    """Multi-class Brier score: mean over samples of sum over classes of (p - onehot)^2.

    This is Brier's original definition; it lies in [0, 2] (0 = perfect, 2 = all mass
    on one wrong class). Some libraries divide by C, or score only the top class;
    numbers from those are not comparable with this one.
    """
    probs, labels = _check_scores_labels(probs, labels)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_report(probs, labels, n_bins: int = 15) -> dict[str, float]:
    """All calibration numbers for one set of predictions, for comparison tables.

    Returns floats: ``accuracy`` (fraction), ``nll`` (nats), ``ece`` and ``mce``
    (fractions, ``n_bins`` equal-width bins) and ``brier`` (in [0, 2]).
    """
    probs, labels = _check_scores_labels(probs, labels)
    return {
        "accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
        "nll": negative_log_likelihood(probs, labels),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "mce": maximum_calibration_error(probs, labels, n_bins),
        "brier": brier_score(probs, labels),
    }


# --------------------------------------------------------------------------- plots


# Bins with fewer samples than this are not drawn as bars: with n < 20 the standard error of the
# bin's accuracy exceeds 0.1 (sqrt(0.25 / 20) = 0.11), so a full-height bar would claim too much.
MIN_BIN_COUNT = 20


def plot_reliability_diagram(probs, labels, n_bins: int = 15, ax=None, title: str | None = None,
                             min_count: int = MIN_BIN_COUNT):
    """Reliability diagram: accuracy per confidence bin against the diagonal.

    Blue bars are the accuracy in each bin; the hatched part is the gap to the bin's mean
    confidence: red above the bar where the bin is overconfident (confidence above accuracy),
    green inside the bar where it is underconfident (accuracy above confidence); the legend
    names each kind the diagram draws; it sits below the axes, off the bars. The number written at
    the foot of each bin is its sample count (they sum to N). A bin with fewer than
    ``min_count`` samples gets no bar, only an open circle at its accuracy: its accuracy
    is too noisy for a bar. ECE is in the legend.

    Returns the matplotlib Axes drawn on (``ax.figure`` is the Figure). Never shows.
    """
    bins = reliability_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
    edges = bins["edges"]
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    counts = bins["counts"]
    solid = counts >= min_count
    sparse = (counts > 0) & ~solid

    ax.bar(centers[solid], bins["accuracy"][solid], width=width, color="tab:blue", edgecolor="black",
           linewidth=0.5, label="accuracy", zorder=2)
    gap = bins["confidence"] - bins["accuracy"]
    over, under = solid & (gap >= 0), solid & (gap < 0)
    # Each direction in its own colour and legend entry: an underconfident gap lies inside its bar.
    if over.any():
        ax.bar(centers[over], gap[over], bottom=bins["accuracy"][over], width=width, color="tab:red", alpha=0.3,
               edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap: overconfident (conf. > acc.)",
               zorder=3)
    if under.any():
        ax.bar(centers[under], gap[under], bottom=bins["accuracy"][under], width=width, color="tab:green",
               alpha=0.45, edgecolor="tab:green", hatch="\\\\", linewidth=0.5,
               label="gap: underconfident (acc. > conf.)", zorder=3)
    if sparse.any():
        ax.scatter(centers[sparse], bins["accuracy"][sparse], s=22, facecolors="none", edgecolors="tab:blue",
                   zorder=4, label=f"accuracy, bin with < {min_count} samples")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration", zorder=4)
    ax.plot([], [], " ", label=f"ECE = {100 * ece:.2f}%")  # text-only legend entry
    ax.plot([], [], " ", label="numbers: samples per bin")
    for center, count in zip(centers, counts):
        if count > 0:  # the count, written up from the bin's foot on a white label: readable on any bar
            ax.text(center, 0.015, f"{count:,}", rotation=90, ha="center", va="bottom", fontsize=6.5, zorder=5,
                    gid="bin count", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8,
                                           "edgecolor": "none"})
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title if title is not None else f"Reliability diagram (ECE {100 * ece:.2f}%)")
    # Below the axes, not on them: inside, the legend covered the bars of the middle confidences.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=7, frameon=False,
              columnspacing=1.0, handlelength=1.5)
    return ax


def plot_confidence_histogram(probs, labels, n_bins: int = 15, ax=None):
    """Histogram of confidences (fraction of samples), with mean confidence and accuracy lines.

    A mean-confidence line right of the accuracy line means the model is overconfident.
    Returns the matplotlib Axes drawn on. Never shows.
    """
    probs, labels = _check_scores_labels(probs, labels)
    confidence = probs.max(axis=1)
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5), layout="constrained")
    ax.hist(confidence, bins=np.linspace(0, 1, n_bins + 1), weights=np.full(len(confidence), 1 / len(confidence)),
            color="tab:blue", edgecolor="black", linewidth=0.5)
    ax.axvline(confidence.mean(), color="tab:red", linestyle="--", label=f"mean confidence {confidence.mean():.3f}")
    ax.axvline(accuracy, color="black", linestyle="-", label=f"accuracy {accuracy:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("fraction of samples")
    ax.legend(loc="upper left", fontsize="small")
    return ax


# --------------------------------------------------------------------------- temperature scaling


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities softmax(logits / T); (N, C) -> (N, C) float64.

    Dividing by T > 0 keeps the argmax, so accuracy is unchanged; T > 1 softens
    (less confident), T < 1 sharpens.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return softmax(to_numpy(logits) / temperature)


def _nll_gradient_in_inverse_temperature(logits: np.ndarray, labels: np.ndarray, beta: float) -> float:
    """d/dbeta of mean NLL(softmax(beta * logits)) = mean(E_p[z] - z_true); increasing in beta."""
    p = softmax(beta * logits)
    expected_logit = np.sum(p * logits, axis=1)
    return float(np.mean(expected_logit - logits[np.arange(len(labels)), labels]))


def fit_temperature(val_logits, val_labels) -> float:
    """Fit one temperature T > 0 minimizing the NLL of softmax(val_logits / T).

    Fit on a validation split, then ``apply_temperature`` to the test logits; never
    fit on the test set, or the test numbers stop being an honest estimate. Accuracy
    does not change because argmax is invariant to positive scaling; only confidence
    (hence NLL, ECE, Brier) does.

    Method: the NLL is convex in beta = 1/T (log-sum-exp of a linear function), so its
    gradient in beta is monotone and the optimum is that gradient's single root. We
    find it by bisection on log(beta) over [1/MAX_TEMPERATURE, 1/MIN_TEMPERATURE]:
    deterministic, needs no starting point or step size, and reaches float precision
    in 60 steps. If the optimum lies beyond the range, the nearest bound is returned
    (happens on degenerate data, e.g. every validation sample correct).

    val_logits: (N, C) logits; val_labels: (N,) ints. Returns T as a Python float.
    """
    logits, labels = _check_scores_labels(val_logits, val_labels, name="val_logits")

    lo, hi = np.log(1 / MAX_TEMPERATURE), np.log(1 / MIN_TEMPERATURE)  # bracket on log(beta)
    if _nll_gradient_in_inverse_temperature(logits, labels, np.exp(lo)) >= 0:
        return MAX_TEMPERATURE
    if _nll_gradient_in_inverse_temperature(logits, labels, np.exp(hi)) <= 0:
        return MIN_TEMPERATURE
    for _ in range(60):
        mid = (lo + hi) / 2
        if _nll_gradient_in_inverse_temperature(logits, labels, np.exp(mid)) < 0:
            lo = mid  # NLL still decreasing: optimum has larger beta
        else:
            hi = mid
    return float(1 / np.exp((lo + hi) / 2))


def calibration_comparison(predictions: dict[str, dict[str, tuple]], n_bins: int = 15) -> list[dict]:
    """Calibration of several runs on test, before and after temperature scaling.

    ``predictions[name] = {"val": (logits, labels), "test": (logits, labels)}`` (a
    ``SplitPredictions`` works as such a pair). The temperature is fitted on ``val`` only and
    applied to ``test``. Returns two rows per run, ``scaling`` "none" then "temperature", each
    with ``run``, ``temperature`` (1.0 for "none") and ``calibration_report``'s numbers.
    """
    rows = []
    for name, splits in predictions.items():
        val_logits, val_labels = splits["val"]
        test_logits, test_labels = splits["test"]
        temperature = fit_temperature(val_logits, val_labels)
        for scaling, t in (("none", 1.0), ("temperature", temperature)):
            report = calibration_report(apply_temperature(test_logits, t), test_labels, n_bins)
            rows.append({"run": name, "scaling": scaling, "temperature": float(t), **report})
    return rows


def format_calibration_table(rows: Sequence[dict]) -> str:
    """The rows of ``calibration_comparison`` as text: accuracy, ECE, MCE in %; NLL in nats."""
    lines = [f"{'run':<22}{'scaling':<13}{'T':>6}{'accuracy':>10}{'NLL':>8}{'ECE':>8}{'MCE':>8}{'Brier':>8}"]
    for r in rows:
        scaling = "none" if r["scaling"] == "none" else "T (val)"
        lines.append(f"{r['run']:<22}{scaling:<13}{r['temperature']:>6.3f}{100 * r['accuracy']:>9.2f}%"
                     f"{r['nll']:>8.4f}{100 * r['ece']:>7.2f}%{100 * r['mce']:>7.2f}%{r['brier']:>8.4f}")
    return "\n".join(lines)


def plot_reliability_panels(panels: dict[str, tuple], n_bins: int = 15, ncols: int = 2, size: float = 4.2):
    """Reliability diagrams side by side: ``panels[title] = (probs, labels)``. Returns the Figure."""
    nrows = math.ceil(len(panels) / ncols)
    # Each panel's legend sits under it: the extra height keeps the diagrams square.
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size * 1.1, nrows * size * 1.3), squeeze=False,
                             layout="constrained")
    for ax, (title, (probs, labels)) in zip(axes.flat, panels.items()):
        plot_reliability_diagram(probs, labels, n_bins=n_bins, ax=ax, title=title)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return fig
