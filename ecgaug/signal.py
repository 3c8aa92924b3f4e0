"""ECG signal conventions: lead orders, sampling rates and conversion between them.

Every ECG tensor in ecgaug is channel-first, ``(..., num_leads, num_samples)``, in mV.
DiffuSETS itself works on 10 s at 102.4 Hz (1024 samples) in MIMIC-IV-ECG's lead order,
which swaps aVL and aVF relative to PTB-XL's.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.signal
import torch

PTBXL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_ORDERS = {"ptbxl": PTBXL_LEADS, "mimic": MIMIC_LEADS, "model": MIMIC_LEADS}
MODEL_LEADS = MIMIC_LEADS
# I and II fix the other four limb leads exactly; the precordial leads are independent of them.
INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")

MODEL_NUM_SAMPLES = 1024
RECORD_SECONDS = 10.0


def resolve_lead_order(lead_order: str | Sequence[str]) -> tuple[str, ...]:
    """Return the lead names for ``"ptbxl"``, ``"mimic"``/``"model"`` or an explicit sequence."""
    if isinstance(lead_order, str):
        if lead_order not in LEAD_ORDERS:
            raise ValueError(f"Unknown lead order {lead_order!r}. Valid values are {sorted(LEAD_ORDERS)} or a sequence of lead names.")
        return LEAD_ORDERS[lead_order]
    leads = tuple(lead_order)
    unknown = set(leads) - set(PTBXL_LEADS)
    if unknown or len(set(leads)) != len(leads):
        raise ValueError(f"Lead order {leads} must name distinct leads from {PTBXL_LEADS}; unknown: {sorted(unknown)}.")
    return leads


def reorder_leads(x, source: str | Sequence[str], target: str | Sequence[str], dim: int = -2):
    """Permute the lead axis ``dim`` of a tensor or array from ``source`` order to ``target`` order."""
    src, dst = resolve_lead_order(source), resolve_lead_order(target)
    if src == dst:
        return x
    missing = set(dst) - set(src)
    if missing:
        raise ValueError(f"Cannot produce leads {sorted(missing)} from a signal with leads {src}.")
    index = [src.index(lead) for lead in dst]
    if isinstance(x, torch.Tensor):
        return x.index_select(dim, torch.tensor(index, device=x.device))
    return np.take(x, index, axis=dim)


def resample(x, num_samples: int, dim: int = -1):
    """FFT-resample ``x`` along ``dim`` to ``num_samples`` (``scipy.signal.resample``'s method).

    DiffuSETS was trained on 5000-sample records FFT-resampled to 1024; using the same method in
    both directions keeps the model's and the caller's spectra consistent.
    """
    if x.shape[dim] == num_samples:
        return x
    if isinstance(x, torch.Tensor):
        return _resample_torch(x, num_samples, dim)
    return scipy.signal.resample(x, num_samples, axis=dim).astype(x.dtype, copy=False)


def _resample_torch(x: torch.Tensor, num_samples: int, dim: int) -> torch.Tensor:
    # Same algorithm as scipy.signal.resample for real input: rfft, truncate or zero-pad the
    # spectrum, halve/double the Nyquist bin as scipy does, inverse rfft, scale by the ratio.
    n_in = x.shape[dim]
    spectrum = torch.fft.rfft(x.to(torch.float64), dim=dim)
    n_keep = min(n_in, num_samples) // 2 + 1
    spectrum = spectrum.narrow(dim, 0, n_keep)
    if num_samples > n_in and n_in % 2 == 0:
        spectrum = spectrum.clone()
        spectrum.select(dim, n_in // 2).mul_(0.5)
    if num_samples < n_in and num_samples % 2 == 0:
        spectrum = spectrum.clone()
        spectrum.select(dim, num_samples // 2).mul_(2.0)
    out = torch.fft.irfft(spectrum, n=num_samples, dim=dim) * (num_samples / n_in)
    return out.to(x.dtype)


def convert_ecg(x, *, source_leads="model", target_leads="ptbxl", num_samples: int | None = None):
    """Convert channel-first ECGs ``(..., 12, L)`` between lead orders and lengths."""
    x = reorder_leads(x, source_leads, target_leads, dim=-2)
    if num_samples is not None:
        x = resample(x, num_samples, dim=-1)
    return x


def derive_limb_leads(x, *, source_leads: Sequence[str] = INDEPENDENT_LEADS, target_leads: str | Sequence[str] = "model"):
    """Expand ECGs ``(..., len(source_leads), L)`` holding I and II to ``target_leads``, computing
    III = II − I, aVR = −(I + II) / 2, aVL = I − II / 2 and aVF = II − I / 2."""
    source = tuple(source_leads)
    if "I" not in source or "II" not in source:
        raise ValueError(f"Deriving the limb leads needs leads I and II, but the signal has {source}.")
    lead_i, lead_ii = x[..., source.index("I"), :], x[..., source.index("II"), :]
    derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    rows = []
    for lead in resolve_lead_order(target_leads):
        if lead in derived:  # derived even where the source has the lead, so the relations hold exactly
            rows.append(derived[lead])
        elif lead in source:
            rows.append(x[..., source.index(lead), :])
        else:
            raise ValueError(f"Cannot produce lead {lead} from leads {source}.")
    stack = torch.stack if isinstance(x, torch.Tensor) else np.stack
    return stack(rows, -2)


def limb_lead_residual(x, lead_order: str | Sequence[str] = "model"):
    """Per-ECG RMS (mV) of how far ``(..., 12, L)`` ECGs break Einthoven's and Goldberger's relations."""
    leads = resolve_lead_order(lead_order)
    residual = x - derive_limb_leads(x, source_leads=leads, target_leads=leads)  # zero outside III, aVR, aVL, aVF
    rms = (residual ** 2).sum(-1).sum(-1) / (4 * x.shape[-1])
    return rms ** 0.5
