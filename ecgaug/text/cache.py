"""A disk cache in front of any text encoder, so no text is embedded (or paid for) twice.

Layout, one folder per encoder ``name`` and one ``.npy`` file per text::

    cache_dir/
        openai_text-embedding-ada-002-1a2b3c4d/   slug of encoder.name + 8 hex of its sha256
            encoder.json                           {"name": "openai:text-embedding-ada-002"}
            5e/5e8f...c1.npy                       sha256(text), float32 (embedding_dim,)

Files are written to a temporary name and renamed into place (atomic on POSIX and Windows), so
processes sharing a folder never read a partial file; if two of them embed the same text at
once, both write the same vector and the last rename wins. Files are saved and loaded without
pickle. Entries never go stale: a text's vector depends only on the encoder ``name`` and the
text, which make up the key. Delete the folder to start over.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .encoders import TextEncoder

__all__ = ["CachedTextEncoder"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as file:
        try:
            write(file)
        except BaseException:
            file.close()
            os.unlink(file.name)
            raise
    os.replace(file.name, path)


class CachedTextEncoder(TextEncoder):
    """Wraps ``encoder`` with a disk cache keyed by ``(encoder.name, text)``.

    :meth:`encode` loads the texts already cached and sends the others (each distinct text
    once) to ``encoder`` in a single call. Its ``name`` and ``embedding_dim`` are the wrapped
    encoder's.

    Args:
        encoder: the encoder whose embeddings are cached.
        cache_dir: root folder of the cache, shared by all encoders; created if needed.

    Attributes:
        num_computed: texts sent to ``encoder`` by this instance so far.
        num_loaded: embeddings read from disk by this instance so far.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | os.PathLike) -> None:
        if not isinstance(encoder, TextEncoder):
            raise TypeError(f"encoder should be a TextEncoder, but got {type(encoder).__name__}.")
        self.encoder = encoder
        self.name = encoder.name
        self.cache_dir = Path(cache_dir)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.name)
        self.folder = self.cache_dir / f"{slug}-{_sha256(encoder.name)[:8]}"
        self.num_computed = 0
        self.num_loaded = 0

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    def path_for(self, text: str) -> Path:
        """The cache file of ``text``."""
        digest = _sha256(text)
        return self.folder / digest[:2] / f"{digest}.npy"

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as err:
            raise RuntimeError(f"Text embedding cache file {path} is unreadable ({err}); delete it to have it recomputed.") from err
        if vector.dtype != np.float32 or vector.shape != (self.embedding_dim,):
            raise RuntimeError(
                f"Text embedding cache file {path} should hold a float32 vector of shape ({self.embedding_dim},), "
                f"but holds {vector.dtype} {vector.shape}; delete it to have it recomputed."
            )
        return vector

    def _save(self, path: Path, vector: np.ndarray) -> None:
        _write_atomically(path, lambda file: np.save(file, np.ascontiguousarray(vector, dtype=np.float32), allow_pickle=False))

    def _write_description(self) -> None:
        description = self.folder / "encoder.json"
        if not description.exists():
            _write_atomically(description, lambda file: file.write(json.dumps({"name": self.name}, indent=2).encode() + b"\n"))

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        vectors: dict[str, np.ndarray] = {}
        misses: list[str] = []
        for text in dict.fromkeys(texts):  # distinct texts, in order
            vector = self._load(self.path_for(text))
            if vector is None:
                misses.append(text)
            else:
                vectors[text] = vector
        self.num_loaded += len(vectors)
        if misses:
            computed = self.encoder.encode(misses, show_progress=show_progress).numpy()
            self.num_computed += len(misses)
            self._write_description()
            for text, vector in zip(misses, computed):
                self._save(self.path_for(text), vector)
                vectors[text] = vector
        return np.stack([vectors[text] for text in texts])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder!r}, cache_dir={str(self.cache_dir)!r})"
