"""Data sets and data tools: PTB-XL loading, heart rate, download."""
from .download import download_ptbxl
from .heart_rate import measure_heart_rate, measure_heart_rates
from .ptbxl import (
    PTBXL,
    build_heart_rate_cache,
    build_signal_cache,
    compute_labels,
    load_database,
    load_heart_rates,
    load_scp_statements,
)

__all__ = [
    "PTBXL",
    "build_heart_rate_cache",
    "build_signal_cache",
    "compute_labels",
    "download_ptbxl",
    "load_database",
    "load_heart_rates",
    "load_scp_statements",
    "measure_heart_rate",
    "measure_heart_rates",
]
