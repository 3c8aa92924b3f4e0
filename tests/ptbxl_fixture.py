"""A small, deterministic fake PTB-XL folder for tests.

``make_ptbxl(root)`` writes the PhysioNet PTB-XL 1.0.3 layout, so code that reads the real
release reads it unchanged::

    root/
        ptbxl_database.csv        ecg_id, patient_id, age, sex (0=male, 1=female), scp_codes,
                                  heart_axis, strat_fold, filename_lr, filename_hr
        scp_statements.csv        FIXTURE_CODES, rows copied from the real release
        records100/00000/00001_lr.{hea,dat}   WFDB, 12 leads, 1000 samples, mV   (100 Hz)
        records500/00000/00001_hr.{hea,dat}   WFDB, 12 leads, 5000 samples, mV   (500 Hz, if asked)
        fixture_truth.csv         ecg_id, heart_rate (bpm), rhythm -- not part of PTB-XL

Signals are synthetic but ECG-like: a P-QRS-T beat train at a per-record heart rate (sinus,
tachycardia, bradycardia, irregular for AFIB, flutter waves for AFLT), limb leads consistent
with Einthoven/Goldberger, small baseline wander and noise. ``fixture_truth.csv`` holds the
true heart rate, ``60 / median(RR)`` of the beats written, for testing QRS detection. Both
sampling rates sample the same continuous signal.

Label profiles are assigned in a fixed cycle, so with ``num_records >= len(PROFILES)`` every
code in ``FIXTURE_CODES`` occurs, some records carry no diagnostic label (form/rhythm only),
and every diagnostic superclass (NORM, MI, STTC, CD, HYP) occurs. Patients own several
records and each patient lies in one ``strat_fold``; with ``num_records >= 30`` all folds
1..10 are present.

Tests call it once per module through a session- or module-scoped fixture, e.g.::

    @pytest.fixture(scope="module")
    def ptbxl_root(tmp_path_factory):
        return make_ptbxl(tmp_path_factory.mktemp("ptbxl"))
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import wfdb

__all__ = ["FIXTURE_CODES", "FIXTURE_LEAD_NAMES", "PROFILES", "load_fixture_truth", "make_ptbxl"]

# Lead names exactly as the real PTB-XL headers spell them.
FIXTURE_LEAD_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
RECORD_SECONDS = 10

# Rows copied verbatim from PTB-XL 1.0.3's scp_statements.csv.
_SCP_STATEMENTS_CSV = """\
,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass,Statement Category,SCP-ECG Statement Description,AHA code,aECG REFID,CDISC Code,DICOM Code
NDT,non-diagnostic T abnormalities,1.0,1.0,,STTC,STTC,other ST-T descriptive statements,non-diagnostic T abnormalities,,,,
NORM,normal ECG,1.0,,,NORM,NORM,Normal/abnormal,normal ECG,1,,,F-000B7
IMI,inferior myocardial infarction,1.0,,,MI,IMI,Myocardial Infarction,inferior myocardial infarction,161,,,
ASMI,anteroseptal myocardial infarction,1.0,,,MI,AMI,Myocardial Infarction,anteroseptal myocardial infarction,165,,,
LVH,left ventricular hypertrophy,1.0,,,HYP,LVH,Ventricular Hypertrophy,left ventricular hypertrophy,142,,C71076,
LAFB,left anterior fascicular block,1.0,,,CD,LAFB/LPFB,Intraventricular and intra-atrial Conduction disturbances,left anterior fascicular block,101,MDC_ECG_BEAT_BLK_ANT_L_HEMI,C62267,D3-33140
ISC_,non-specific ischemic,1.0,,,STTC,ISC_,Basic roots for coding ST-T changes and abnormalities,ischemic ST-T changes,226,,,
1AVB,first degree AV block,1.0,,,CD,_AVB,"Sinus node dysfunction, atrial and AV-conduction defects",first degree AV block,,MDC_ECG_RHY_AV_HEART_BLK_DEG_1,C111088,
CRBBB,complete right bundle branch block,1.0,,,CD,CRBBB,Intraventricular and intra-atrial Conduction disturbances,(complete) right bundle branch block,106,MDC_ECG_BEAT_RBB_BLK_COMP,C62270,D3-33110
CLBBB,complete left bundle branch block,1.0,,,CD,CLBBB,Intraventricular and intra-atrial Conduction disturbances,(complete) left bundle branch block,104,MDC_ECG_BEAT_LBB_BLK_COMP,C62269,D3-33120 or 122752
3AVB,third degree AV block,1.0,,,CD,_AVB,"Sinus node dysfunction, atrial and AV-conduction defects",third degree AV block,88,MDC_ECG_RHY_AV_HEART_BLK_DEG_3,C111091,D3-32102
PVC,ventricular premature complex,,1.0,,,,Statements related to ectopic rhythm abnormalities,ventricular premature complex (beat),60,MDC_ECG_BEAT_V_P_C,,
LVOLT,low QRS voltages in the frontal and horizontal leads,,1.0,,,,Other QRS morphology descriptive statements,low QRS voltages in the frontal and horizontal leads,,,,
SR,sinus rhythm,,,1.0,,,Statements related to impulse formation (abnormalities),sinus rhythm,20,MDC_ECG_RHY_SINUS_RHY,,
AFIB,atrial fibrillation,,,1.0,,,Statements related to impulse formation (abnormalities),atrial fibrillation,50,MDC_ECG_RHY_ATR_FIB,,D3-31520
STACH,sinus tachycardia,,,1.0,,,Statements related to impulse formation (abnormalities),sinus tachycardia,21,MDC_ECG_RHY_SINUS_TACHY,,
SBRAD,sinus bradycardia,,,1.0,,,Statements related to impulse formation (abnormalities),sinus bradycardia,22,MDC_ECG_RHY_SINUS_BRADY,,
AFLT,atrial flutter,,,1.0,,,Statements related to impulse formation (abnormalities),atrial flutter,51,MDC_ECG_RHY_ATR_FLUT,,
"""
FIXTURE_CODES: tuple[str, ...] = tuple(pd.read_csv(io.StringIO(_SCP_STATEMENTS_CSV), index_col=0).index)

# (scp_codes, rhythm) cycled over the records; likelihoods as the release writes them
# (diagnostic statements 15..100, form/rhythm statements mostly 0.0).
PROFILES: tuple[tuple[dict[str, float], str], ...] = (
    ({"NORM": 100.0, "SR": 0.0}, "SR"),
    ({"IMI": 100.0, "SR": 0.0}, "SR"),
    ({"NORM": 80.0, "SBRAD": 0.0}, "SBRAD"),
    ({"ASMI": 100.0, "ISC_": 50.0, "SR": 0.0}, "SR"),
    ({"LVH": 100.0, "SR": 0.0}, "SR"),
    ({"NORM": 100.0, "STACH": 0.0}, "STACH"),
    ({"LAFB": 100.0, "IMI": 15.0, "SR": 0.0}, "SR"),
    ({"CLBBB": 100.0, "SR": 0.0}, "SR"),
    ({"CRBBB": 100.0, "1AVB": 100.0, "SR": 0.0}, "SR"),
    ({"NDT": 100.0, "AFIB": 0.0}, "AFIB"),
    ({"LVOLT": 0.0, "SR": 0.0}, "SR"),  # no diagnostic label
    ({"NORM": 100.0, "SR": 0.0}, "SR"),
    ({"3AVB": 100.0, "SR": 0.0}, "3AVB"),
    ({"ISC_": 100.0, "LVH": 50.0, "STACH": 0.0}, "STACH"),
    ({"AFLT": 0.0}, "AFLT"),  # rhythm label only
    ({"PVC": 100.0, "IMI": 35.0, "SR": 0.0}, "SR"),
    ({"NORM": 100.0, "SR": 0.0}, "SR"),
    ({"ASMI": 50.0, "AFIB": 0.0}, "AFIB"),
)

# Mean heart rate range (bpm) per rhythm; 3AVB is the ventricular escape rate.
_RATE_RANGES = {"SR": (60, 95), "STACH": (105, 140), "SBRAD": (42, 56), "AFIB": (70, 115), "AFLT": (70, 80), "3AVB": (36, 45)}

# Per-lead amplitudes (mV) of the P, Q, R, S, T waves for leads I and II, and V1..V6.
# III, aVR, aVL, aVF follow from I and II (Einthoven/Goldberger), as in a real recording.
_WAVES = ("P", "Q", "R", "S", "T")
_LIMB_AMPLITUDES = {"I": (0.08, -0.05, 0.6, -0.10, 0.20), "II": (0.15, -0.08, 1.1, -0.25, 0.30)}
_CHEST_AMPLITUDES = {
    "V1": (0.08, 0.0, 0.25, -1.00, -0.10),
    "V2": (0.08, 0.0, 0.55, -1.30, 0.35),
    "V3": (0.08, 0.0, 0.90, -0.80, 0.40),
    "V4": (0.10, -0.05, 1.40, -0.40, 0.40),
    "V5": (0.10, -0.08, 1.30, -0.20, 0.30),
    "V6": (0.10, -0.08, 0.90, -0.10, 0.25),
}
# (onset relative to the R peak in s, Gaussian width in s) of each wave.
_WAVE_SHAPES = {"P": (-0.16, 0.025), "Q": (-0.025, 0.008), "R": (0.0, 0.010), "S": (0.03, 0.010), "T": (0.28, 0.050)}


def _beat_times(rng: np.random.Generator, rhythm: str) -> np.ndarray:
    """R-peak times (s) within the record for one rhythm."""
    low, high = _RATE_RANGES[rhythm]
    mean_rr = 60.0 / rng.uniform(low, high)
    jitter = 0.25 if rhythm == "AFIB" else 0.02
    times = [rng.uniform(0.1, 0.1 + mean_rr)]
    while True:
        next_time = times[-1] + mean_rr * (1.0 + rng.uniform(-jitter, jitter))
        if next_time > RECORD_SECONDS - 0.4:  # keep the last T wave inside the record
            break
        times.append(next_time)
    return np.asarray(times)


def _waves(t: np.ndarray, beats: np.ndarray, rhythm: str) -> dict[str, np.ndarray]:
    """Unit-amplitude wave trains sampled at ``t`` (s), one per wave in ``_WAVES``."""
    waves = {}
    for name, (offset, width) in _WAVE_SHAPES.items():
        if name == "P" and rhythm in ("AFIB", "AFLT"):
            waves[name] = np.zeros_like(t)
            continue
        centres = beats + offset
        waves[name] = np.exp(-0.5 * ((t[None, :] - centres[:, None]) / width) ** 2).sum(axis=0)
    if rhythm == "AFLT":  # flutter waves at 300/min replace the P waves
        waves["P"] = 0.8 * (2.0 * ((t * 5.0) % 1.0) - 1.0)
    return waves


def _signal(t: np.ndarray, beats: np.ndarray, rhythm: str, gain: float, phase: float, noise: np.ndarray) -> np.ndarray:
    """The 12-lead signal ``(len(t), 12)`` in mV, PTB-XL lead order."""
    waves = _waves(t, beats, rhythm)

    def lead(amplitudes):
        return sum(a * waves[name] for a, name in zip(amplitudes, _WAVES))

    lead_i, lead_ii = lead(_LIMB_AMPLITUDES["I"]), lead(_LIMB_AMPLITUDES["II"])
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    chest = [lead(_CHEST_AMPLITUDES[name]) for name in ("V1", "V2", "V3", "V4", "V5", "V6")]
    wander = 0.05 * np.sin(2 * np.pi * 0.3 * t + phase)
    return gain * np.stack(limb + chest, axis=1) + wander[:, None] + noise


def _record_dir(ecg_id: int) -> str:
    return f"{ecg_id // 1000 * 1000:05d}"


def make_ptbxl(root, num_records: int = 60, sampling_rates: Iterable[int] = (100,), seed: int = 0) -> Path:
    """Write a fake PTB-XL folder at ``root`` and return ``root`` as a Path.

    Args:
        root: Folder to write into (created if missing; existing fixture files are overwritten).
        num_records: Number of records (``ecg_id`` 1..num_records). At least 30 puts every
            ``strat_fold`` 1..10 in the table; at least ``len(PROFILES)`` uses every code.
        sampling_rates: Any of 100 (``records100``, 1000 samples) and 500 (``records500``,
            5000 samples). The table always lists both ``filename_lr`` and ``filename_hr``,
            as the release does, whether or not those files are written.
        seed: Seed of everything random (heart rates, ages, sexes, noise, gains).

    Returns:
        ``Path(root)``.
    """
    sampling_rates = tuple(sampling_rates)
    if num_records < 1:
        raise ValueError(f"num_records should be a positive integer, but got num_records={num_records}")
    unknown = set(sampling_rates) - {100, 500}
    if unknown or not sampling_rates:
        raise ValueError(f"sampling_rates should be a non-empty subset of (100, 500), but got {sampling_rates}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # About three records per patient; patient p lies in fold p % 10 + 1.
    num_patients = max(1, num_records * 2 // 3)
    patient_of_record = np.concatenate([np.arange(num_patients), rng.integers(0, num_patients, num_records - num_patients)])
    patient_ids = rng.choice(np.arange(1000, 22000), size=num_patients, replace=False).astype(float)
    patient_sex = rng.integers(0, 2, num_patients)
    patient_age = rng.integers(18, 90, num_patients).astype(float)

    rows, truth = [], []
    for index in range(num_records):
        ecg_id = index + 1
        patient = int(patient_of_record[index])
        scp_codes, rhythm = PROFILES[index % len(PROFILES)]
        beats = _beat_times(rng, rhythm)
        gain = 0.4 if "LVOLT" in scp_codes else (1.6 if "LVH" in scp_codes else rng.uniform(0.8, 1.2))
        phase = rng.uniform(0, 2 * np.pi)
        age = np.nan if index % 17 == 5 else patient_age[patient]
        noise_seed = int(rng.integers(2**31))
        for fs in sampling_rates:
            num_samples = RECORD_SECONDS * fs
            t = np.arange(num_samples) / fs
            noise = 0.01 * np.random.default_rng(noise_seed).standard_normal((num_samples, 12))
            suffix, folder = ("lr", "records100") if fs == 100 else ("hr", "records500")
            write_dir = root / folder / _record_dir(ecg_id)
            write_dir.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(
                f"{ecg_id:05d}_{suffix}",
                fs=fs,
                units=["mV"] * 12,
                sig_name=list(FIXTURE_LEAD_NAMES),
                p_signal=_signal(t, beats, rhythm, gain, phase, noise),
                fmt=["16"] * 12,
                adc_gain=[1000.0] * 12,
                baseline=[0] * 12,
                write_dir=str(write_dir),
            )
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": patient_ids[patient],
                "age": age,
                "sex": int(patient_sex[patient]),
                "scp_codes": repr(scp_codes),
                "heart_axis": "MID" if index % 3 else np.nan,
                "strat_fold": patient % 10 + 1,
                "filename_lr": f"records100/{_record_dir(ecg_id)}/{ecg_id:05d}_lr",
                "filename_hr": f"records500/{_record_dir(ecg_id)}/{ecg_id:05d}_hr",
            }
        )
        truth.append({"ecg_id": ecg_id, "heart_rate": 60.0 / float(np.median(np.diff(beats))), "rhythm": rhythm})

    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    (root / "scp_statements.csv").write_text(_SCP_STATEMENTS_CSV)
    pd.DataFrame(truth).to_csv(root / "fixture_truth.csv", index=False)
    return root


def load_fixture_truth(root) -> pd.DataFrame:
    """The fixture's ground truth, indexed by ``ecg_id``: ``heart_rate`` (bpm) and ``rhythm``."""
    return pd.read_csv(Path(root) / "fixture_truth.csv", index_col="ecg_id")
