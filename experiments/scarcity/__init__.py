"""The data-scarcity experiment of issue #5: does DiffuSETS augmentation help PTB-XL classifiers when labelled data is scarce?

Modules: :mod:`.config` (the experiment as plain data), :mod:`.regimes` (patient subsets, the
rare-class cut), :mod:`.synthetic` (model-card check, the synthetic pool, each cell's draw),
:mod:`.arms` (each arm's training set), :mod:`.runner` (prepare → perform → evaluate),
:mod:`.report` (bootstrap CIs, table, plots), :mod:`.timing` (the time estimate).
Entry point: ``experiments/augment_ptbxl.py``.
"""
from .config import ARM_NAMES, Arm, ExperimentConfig, Regime, make_arms, make_regimes, sweep_arms
from .runner import evaluate, perform, prepare, run

__all__ = ["ARM_NAMES", "Arm", "ExperimentConfig", "Regime", "evaluate", "make_arms", "make_regimes", "perform", "prepare", "run", "sweep_arms"]
