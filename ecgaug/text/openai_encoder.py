"""OpenAI embeddings (the text encoder DiffuSETS was trained with: ``text-embedding-ada-002``).

Requests go through the official ``openai`` client (``pip install ecgaug[openai]``), which
retries rate limits (429), timeouts and server errors (5xx) with exponential backoff and jitter
and honours the server's ``Retry-After`` header. The API key comes from the explicit argument
or the ``OPENAI_API_KEY`` environment variable; it is handed to the client only and never kept,
logged or shown in ``repr``.
"""
from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from .encoders import TextEncoder

__all__ = ["OPENAI_EMBEDDING_DIMS", "OpenAITextEncoder"]

API_KEY_ENV = "OPENAI_API_KEY"

# Output sizes of OpenAI's embedding models (without the ``dimensions`` request option).
OPENAI_EMBEDDING_DIMS = {
    "text-embedding-ada-002": 1536,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
}


class OpenAITextEncoder(TextEncoder):
    """Embeds texts with the OpenAI embeddings API, ``batch_size`` texts per request.

    Args:
        model: embedding model name. Defaults to ``"text-embedding-ada-002"`` (DiffuSETS'
            encoder). The size of models missing from ``OPENAI_EMBEDDING_DIMS`` is read from
            the first response.
        api_key: API key; defaults to the ``OPENAI_API_KEY`` environment variable.
        base_url: API root, e.g. ``"http://127.0.0.1:8000/v1"`` for a compatible server;
            defaults to the client's (``OPENAI_BASE_URL`` or ``https://api.openai.com/v1``).
        batch_size: texts per request (the API accepts at most 2048).
        max_retries: retries per request on 408/409/429/5xx and connection errors, with
            exponential backoff (0.5 s doubling up to 8 s) unless the server sends ``Retry-After``.
        timeout: seconds before a request is abandoned (and retried).

    Raises:
        RuntimeError: if no key is given and ``OPENAI_API_KEY`` is not set.
    """

    def __init__(
        self,
        model: str = "text-embedding-ada-002",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        batch_size: int = 256,
        max_retries: int = 5,
        timeout: float = 60.0,
    ) -> None:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= 2048:
            raise ValueError(f"batch_size should be an integer in [1, 2048], but got batch_size={batch_size!r}.")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries should be a non-negative integer, but got max_retries={max_retries!r}.")
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if not api_key:
            raise RuntimeError(
                f"OpenAITextEncoder needs an API key, but none was given and {API_KEY_ENV} is not set. "
                f"Set the {API_KEY_ENV} environment variable (or pass api_key=), or use an offline encoder: "
                "get_text_encoder('table', path=...) or get_text_encoder('minilm')."
            )
        try:
            import openai
        except ImportError as err:
            raise ImportError("OpenAITextEncoder needs the openai package: pip install 'ecgaug[openai]'.") from err

        self.model = model
        self.base_url = base_url
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.timeout = timeout
        self.name = f"openai:{model}"
        self._embedding_dim = OPENAI_EMBEDDING_DIMS.get(model)
        # The key lives only inside the client.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)

    @property
    def embedding_dim(self) -> int:
        if self._embedding_dim is None:
            raise RuntimeError(
                f"The embedding size of OpenAI model {self.model!r} is not known before its first response; "
                f"call encode() once first, or use one of {sorted(OPENAI_EMBEDDING_DIMS)}."
            )
        return self._embedding_dim

    def _encode(self, texts: list[str]) -> np.ndarray:
        starts = range(0, len(texts), self.batch_size)
        batches = []
        for start in tqdm(starts, desc="OpenAI embeddings", unit="request", disable=len(starts) <= 1):
            batches.append(self._encode_batch(texts[start : start + self.batch_size]))
        return np.concatenate(batches, axis=0)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        response = self._client.embeddings.create(model=self.model, input=texts, encoding_format="float")
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(texts))):
            raise RuntimeError(
                f"The OpenAI response should hold one embedding per input (indices 0..{len(texts) - 1}), "
                f"but got indices {[item.index for item in data]}."
            )
        embeddings = np.asarray([item.embedding for item in data], dtype=np.float32)
        if self._embedding_dim is None:
            self._embedding_dim = embeddings.shape[1]
        if embeddings.shape[1] != self._embedding_dim:
            raise RuntimeError(
                f"OpenAI model {self.model!r} should return {self._embedding_dim}-d embeddings, but got {embeddings.shape[1]}-d ones."
            )
        return embeddings

    def __repr__(self) -> str:
        base_url = "" if self.base_url is None else f", base_url={self.base_url!r}"
        return f"{type(self).__name__}(model={self.model!r}{base_url}, batch_size={self.batch_size}, max_retries={self.max_retries})"
