"""Fidelity evaluation of DiffuSETS models: what their ECGs are worth to a downstream classifier.

- :mod:`.conditions`: held-out checks and PTB-XL records as generation conditions (data);
- :mod:`.metrics`: reconstruction, heart rate, rhythm regularity, recognition, lead consistency (pure functions);
- :mod:`.classifiers`: the real-data measuring-stick classifiers and TSTR / TRTR;
- :mod:`.evaluate`: :func:`evaluate_model`, which runs them all (``ecgaug evaluate``);
- :mod:`.model_card`: ``card.json``, the model card and its figure.
"""
from .evaluate import evaluate_model, save_results

__all__ = ["evaluate_model", "save_results"]
