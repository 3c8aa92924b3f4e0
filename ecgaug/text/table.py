"""Stored embeddings: the published ``ptbxl_text_embed.csv`` format.

The DiffuSETS authors publish ``ptbxl_text_embed.csv`` with the ada-002 embedding of every
PTB-XL prompt, so PTB-XL conditions can be used without an OpenAI key. It has two columns:

- ``text``: the prompt string (:func:`ecgaug.text.build_prompt` output), matched exactly;
- ``embed``: the vector written as text, ``"[0.1, -0.2, ...]"`` (numpy's space-separated
  ``"[0.1 -0.2 ...]"`` is read too).

Vectors are parsed as numbers only (never ``eval``). A text that is not in the table is an
error, never a zero vector: the published experiment code silently used zeros.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .encoders import TextEncoder

__all__ = ["MissingEmbeddingError", "TableTextEncoder", "parse_embedding"]


class MissingEmbeddingError(KeyError):
    """A text has no row in the embedding table."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


def _shorten(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_embedding(value: str) -> np.ndarray:
    """Parse ``"[0.1, -0.2, ...]"`` (or ``"[0.1 -0.2 ...]"``) into a float32 vector.

    Raises:
        ValueError: if ``value`` is not a bracketed list of numbers.
    """
    if not isinstance(value, str):
        raise ValueError(f"An embedding should be a string like '[0.1, -0.2, ...]', but got {type(value).__name__}: {value!r}.")
    stripped = value.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        raise ValueError(f"An embedding should be a string like '[0.1, -0.2, ...]', but got {_shorten(value, 60)!r}.")
    try:
        vector = np.array(stripped[1:-1].replace(",", " ").split(), dtype=np.float32)
    except ValueError as err:
        raise ValueError(f"An embedding should contain only numbers, but got {_shorten(value, 60)!r} ({err}).") from None
    if vector.size == 0:
        raise ValueError("An embedding should contain at least one number, but got '[]'.")
    return vector


class TableTextEncoder(TextEncoder):
    """Looks embeddings up in a ``text,embed`` CSV table.

    Args:
        path: the CSV file, e.g. ``ptbxl_text_embed.csv`` from the DiffuSETS release.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the columns are missing, a vector cannot be parsed, vectors differ in
            length, or one text has two different vectors.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"Text embedding table {self.path} not found. Download ptbxl_text_embed.csv from the Laiyf/DiffuSETS "
                "Hugging Face repository, or use get_text_encoder('openai') / get_text_encoder('minilm')."
            )
        self.name = f"table:{self.path.name}"
        self._row_of_text, self._embeddings = self._load(self.path)

    @staticmethod
    def _load(path: Path) -> tuple[dict[str, int], np.ndarray]:
        table = pd.read_csv(path, usecols=lambda column: column in {"text", "embed"}, dtype=str, keep_default_na=False)
        missing = {"text", "embed"} - set(table.columns)
        if missing:
            raise ValueError(f"Text embedding table {path} should have columns 'text' and 'embed', but lacks {sorted(missing)}.")
        if table.empty:
            raise ValueError(f"Text embedding table {path} should have at least one row, but it is empty.")
        row_of_text: dict[str, int] = {}
        vectors: list[np.ndarray] = []
        for line, (text, embed) in enumerate(zip(table["text"], table["embed"]), start=2):
            try:
                vector = parse_embedding(embed)
            except ValueError as err:
                raise ValueError(f"{path}, line {line}: {err}") from None
            if vectors and vector.shape != vectors[0].shape:
                raise ValueError(
                    f"{path}, line {line}: embeddings should all have {vectors[0].size} values, but this one has {vector.size}."
                )
            if text in row_of_text:
                if not np.array_equal(vectors[row_of_text[text]], vector):
                    raise ValueError(f"{path}, line {line}: text {_shorten(text)!r} appears again with a different embedding.")
                continue
            row_of_text[text] = len(vectors)
            vectors.append(vector)
        return row_of_text, np.stack(vectors)

    @property
    def embedding_dim(self) -> int:
        return self._embeddings.shape[1]

    @property
    def texts(self) -> list[str]:
        """The texts the table covers, in file order."""
        return list(self._row_of_text)

    def __len__(self) -> int:
        return len(self._row_of_text)

    def __contains__(self, text: object) -> bool:
        return text in self._row_of_text

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        missing = [text for text in texts if text not in self._row_of_text]
        if missing:
            raise MissingEmbeddingError(
                f"No stored embedding for text {_shorten(missing[0])!r} ({len(set(missing))} of the {len(set(texts))} "
                f"distinct texts are missing) in {self.path} ({len(self)} texts). Texts must match the table's prompts "
                "exactly; to embed new texts use get_text_encoder('openai') or get_text_encoder('minilm')."
            )
        return self._embeddings[[self._row_of_text[text] for text in texts]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, num_texts={len(self)}, embedding_dim={self.embedding_dim})"
