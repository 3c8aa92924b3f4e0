"""Standard 12-lead ECG plots on ECG paper (25 mm/s, 10 mm/mV)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecgaug.signal import resolve_lead_order  # noqa: E402

__all__ = ["plot_12lead", "save_12lead"]

_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def plot_12lead(ax, ecg: np.ndarray, sampling_rate: float, lead_order: str | Sequence[str] = "ptbxl", *, title: str | None = None,
                rhythm_lead: str = "II", color: str = "black") -> None:
    """Draw ``ecg`` ``(12, L)`` in mV as the clinical 3 × 4 layout plus a 10 s rhythm strip."""
    ecg = np.asarray(ecg, dtype=np.float64)
    leads = resolve_lead_order(lead_order)
    seconds = ecg.shape[1] / sampling_rate
    segment = seconds / 4
    t = np.arange(ecg.shape[1]) / sampling_rate
    row_height = 3.0  # mV between baselines
    rows = [list(r) for r in _LAYOUT] + [[rhythm_lead]]
    for r, row in enumerate(rows):
        baseline = -r * row_height
        for c, lead in enumerate(row):
            signal = ecg[leads.index(lead)]
            mask = slice(None) if len(row) == 1 else (t >= c * segment) & (t < (c + 1) * segment)
            ax.plot(t[mask], signal[mask] + baseline, color=color, linewidth=0.6)
            ax.text((0 if len(row) == 1 else c * segment) + 0.05, baseline + 0.9, lead, fontsize=7)
    top, bottom = row_height * 0.5, -row_height * (len(rows) - 0.5)
    _ecg_paper(ax, seconds, bottom, top)
    ax.set_xlim(0, seconds)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _ecg_paper(ax, seconds: float, bottom: float, top: float) -> None:
    for x in np.arange(0, seconds + 1e-9, 0.04):  # 1 mm = 40 ms
        major = abs(x / 0.2 - round(x / 0.2)) < 1e-6
        ax.axvline(x, color="#f4a6a6" if major else "#fbe0e0", linewidth=0.5 if major else 0.25, zorder=0)
    for y in np.arange(np.floor(bottom * 10) / 10, top + 1e-9, 0.1):  # 1 mm = 0.1 mV
        major = abs(y / 0.5 - round(y / 0.5)) < 1e-6
        ax.axhline(y, color="#f4a6a6" if major else "#fbe0e0", linewidth=0.5 if major else 0.25, zorder=0)


def save_12lead(path, ecg: np.ndarray, sampling_rate: float, lead_order="ptbxl", *, title: str | None = None) -> None:
    """One 12-lead ECG as a PNG file."""
    fig, ax = plt.subplots(figsize=(11, 7))
    plot_12lead(ax, ecg, sampling_rate, lead_order, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
