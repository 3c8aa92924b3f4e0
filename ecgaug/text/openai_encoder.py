"""OpenAI embeddings (the text encoder DiffuSETS was trained with: ``text-embedding-ada-002``).

Requests go through the official ``openai`` client (``pip install ecgaug[openai]``). Rate limits
(429), timeouts, connection errors and server errors (408, 409, 5xx) are retried here with
exponential backoff and jitter, honouring the server's ``Retry-After``, within two limits: each
request gets ``request_timeout`` seconds, and one ``encode`` call all of its requests, retries and
waits included, ``total_timeout`` seconds. Errors name the endpoint's URL. The API key comes from
the explicit argument or the ``OPENAI_API_KEY`` environment variable; it is handed to the client
only and never kept, logged or shown in ``repr``.
"""
from __future__ import annotations

import math
import os
import random
import time

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
        max_retries: retries per request on 408/409/429/5xx, timeouts and connection errors, with
            exponential backoff (0.5 s doubling up to 8 s) unless the server sends ``Retry-After``.
        request_timeout: seconds one request may take before it is abandoned (and retried).
        total_timeout: seconds one :meth:`encode` call may take in all (every batch, retry and
            wait); ``None`` for no limit.

    Raises:
        RuntimeError: if no key is given and ``OPENAI_API_KEY`` is not set.

    ``encode`` raises ``TimeoutError`` past ``total_timeout`` and ``ConnectionError`` when the
    endpoint cannot be reached after the retries, both naming its URL; an error status that is not
    retried (or still failing after the retries) raises the client's ``openai.APIStatusError``.
    """

    def __init__(
        self,
        model: str = "text-embedding-ada-002",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        batch_size: int = 256,
        max_retries: int = 5,
        request_timeout: float = 60.0,
        total_timeout: float | None = 600.0,
    ) -> None:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= 2048:
            raise ValueError(f"batch_size should be an integer in [1, 2048], but got batch_size={batch_size!r}.")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries should be a non-negative integer, but got max_retries={max_retries!r}.")
        for name, value in (("request_timeout", request_timeout), ("total_timeout", total_timeout)):
            if not (value is None and name == "total_timeout") and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} should be a positive number of seconds, but got {name}={value!r}.")
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
        self.request_timeout = float(request_timeout)
        self.total_timeout = None if total_timeout is None else float(total_timeout)
        self.name = f"openai:{model}"
        self._embedding_dim = OPENAI_EMBEDDING_DIMS.get(model)
        # The key lives only inside the client. Retries are ours (below), so that they respect total_timeout.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=self.request_timeout)
        self.url = f"{str(self._client.base_url).rstrip('/')}/embeddings"

    @property
    def embedding_dim(self) -> int:
        if self._embedding_dim is None:
            raise RuntimeError(
                f"The embedding size of OpenAI model {self.model!r} is not known before its first response; "
                f"call encode() once first, or use one of {sorted(OPENAI_EMBEDDING_DIMS)}."
            )
        return self._embedding_dim

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        deadline = math.inf if self.total_timeout is None else time.monotonic() + self.total_timeout
        starts = range(0, len(texts), self.batch_size)
        batches = []
        for start in tqdm(starts, desc="OpenAI embeddings", unit="request", disable=len(starts) <= 1):
            batches.append(self._encode_batch(texts[start : start + self.batch_size], deadline))
        return np.concatenate(batches, axis=0)

    def _create(self, texts: list[str], deadline: float):
        """One embeddings request, retried on transient errors until ``max_retries`` or the deadline."""
        import openai

        for attempt in range(self.max_retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return self._client.embeddings.create(model=self.model, input=texts, encoding_format="float",
                                                      timeout=min(self.request_timeout, remaining))
            except openai.APIConnectionError as error:  # includes APITimeoutError
                if attempt == self.max_retries:
                    raise ConnectionError(f"Could not get embeddings from {self.url} ({self.max_retries + 1} attempts, "
                                          f"request_timeout {self.request_timeout:g} s): {error}") from error
                wait = None
            except openai.APIStatusError as error:
                if attempt == self.max_retries or not _retryable(error.response):
                    raise
                wait = _retry_after(error.response.headers)
            if wait is None:
                wait = min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
        raise TimeoutError(f"No embeddings from {self.url} within total_timeout={self.total_timeout:g} s "
                           f"(request_timeout {self.request_timeout:g} s, up to {self.max_retries} retries).")

    def _encode_batch(self, texts: list[str], deadline: float = math.inf) -> np.ndarray:
        response = self._create(texts, deadline)
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
        return (f"{type(self).__name__}(model={self.model!r}{base_url}, batch_size={self.batch_size}, max_retries={self.max_retries}, "
                f"request_timeout={self.request_timeout:g}, total_timeout={self.total_timeout})")


def _retryable(response) -> bool:
    """408 request timeout, 409 lock timeout, 429 rate limit and 5xx, unless the server says not to retry."""
    should_retry = response.headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    return response.status_code in (408, 409, 429) or response.status_code >= 500


def _retry_after(headers) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms`` or ``retry-after`` in seconds), if at most 60."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) * scale
        except ValueError:
            continue
        if 0 < seconds <= 60:
            return seconds
    return None
