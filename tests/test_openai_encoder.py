"""OpenAITextEncoder against a local imitation of ``POST /v1/embeddings``, through the real client."""
import json
import logging
import re
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
import torch

from ecgaug.text import CachedTextEncoder, OpenAITextEncoder, get_text_encoder

KEY = "sk-test-0123456789abcdef-do-not-leak"
FAKE_MODEL = "fake-embedding-4"  # not a known model: its size (4) is read from the first response


def fake_embedding(text: str, dim: int) -> list[float]:
    seed = zlib.crc32(text.encode())
    return [float(len(text)), float(seed % 1000)] + [float(i) for i in range(dim - 2)]


class FakeOpenAI(ThreadingHTTPServer):
    """Answers embedding requests; ``failures`` lists status codes to return first, in order."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures: list[int] = []
        self.requests: list[dict] = []  # {"status", "authorization", "body"}
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def successful_inputs(self) -> list[list[str]]:
        return [r["body"]["input"] for r in self.requests if r["status"] == 200]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_POST(self):
        server: FakeOpenAI = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            status = server.failures.pop(0) if server.failures else 200
            server.requests.append({"status": status, "authorization": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/embeddings":
            status = 404
        if status != 200:
            payload = {"error": {"message": f"fake error {status}", "type": "fake", "param": None, "code": None}}
            self.send_json(status, payload, {"retry-after-ms": "10"})  # keep the client's backoff tiny
            return
        dim = 1536 if body["model"] == "text-embedding-ada-002" else 4
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(text, dim)} for i, text in enumerate(body["input"])]
        payload = {
            "object": "list",
            "data": data[::-1],  # the API does not promise order; the encoder must sort by index
            "model": body["model"],
            "usage": {"prompt_tokens": len(body["input"]), "total_tokens": len(body["input"])},
        }
        self.send_json(200, payload, {})

    def send_json(self, status, payload, headers):
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def server():
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def expected(texts, dim=4):
    return torch.tensor([fake_embedding(t, dim) for t in texts], dtype=torch.float32)


def test_key_from_env_is_sent_but_not_shown_or_logged(server, api_key, caplog):
    caplog.set_level(logging.DEBUG)
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=server.base_url)
    out = encoder.encode(["sinus rhythm", "atrial fibrillation"])
    torch.testing.assert_close(out, expected(["sinus rhythm", "atrial fibrillation"]))
    assert encoder.embedding_dim == 4 and encoder.name == f"openai:{FAKE_MODEL}"
    assert server.requests[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(encoder) and KEY not in str(encoder)
    assert caplog.records  # the client did log at DEBUG level ...
    assert KEY not in caplog.text  # ... but never the key


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        OpenAITextEncoder()
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        get_text_encoder("openai")


def test_ada_002_is_1536_d_before_any_request(server, api_key):
    encoder = get_text_encoder("openai", base_url=server.base_url, model=None)
    assert encoder.embedding_dim == 1536 and not server.requests
    assert encoder.encode(["normal ECG"]).shape == (1, 1536)
    assert server.requests[0]["body"]["model"] == "text-embedding-ada-002"


@pytest.mark.parametrize("status", [429, 500])
def test_rate_limit_or_server_error_then_success_is_retried(server, api_key, status):
    server.failures = [status]
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=server.base_url, max_retries=3)
    out = encoder.encode(["sinus bradycardia"])
    assert [r["status"] for r in server.requests] == [status, 200]
    assert server.requests[0]["body"] == server.requests[1]["body"]
    torch.testing.assert_close(out, expected(["sinus bradycardia"]))


def test_retries_give_up_after_max_retries(server, api_key):
    server.failures = [429, 429, 429]
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=server.base_url, max_retries=1)
    with pytest.raises(openai.RateLimitError):
        encoder.encode(["sinus bradycardia"])
    assert len(server.requests) == 2  # the first try and one retry


def test_texts_are_batched_and_order_is_preserved(server, api_key):
    texts = [f"report line {i}" for i in range(7)]
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=server.base_url, batch_size=3)
    out = encoder.encode(texts)
    assert server.successful_inputs == [texts[0:3], texts[3:6], texts[6:7]]
    torch.testing.assert_close(out, expected(texts))


def test_cached_openai_encoder_sends_no_text_twice(server, api_key, tmp_path):
    encoder = get_text_encoder("openai", model=FAKE_MODEL, base_url=server.base_url, cache_dir=tmp_path)
    assert isinstance(encoder, CachedTextEncoder)
    encoder.encode(["a", "b"])
    encoder.encode(["b", "c", "a"])
    assert server.successful_inputs == [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    "kwargs, match", [({"batch_size": 0}, "batch_size"), ({"batch_size": 4096}, "batch_size"), ({"max_retries": -1}, "max_retries")]
)
def test_invalid_arguments(api_key, kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenAITextEncoder(**kwargs)


@pytest.fixture
def silent_url():
    """A loopback port that accepts connections (the kernel's backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


def test_total_timeout_bounds_a_server_that_never_answers(silent_url, api_key):
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=silent_url, request_timeout=30, total_timeout=0.3, max_retries=5)
    with pytest.raises(TimeoutError, match=rf"{re.escape(silent_url)}/embeddings within total_timeout=0.3 s"):
        encoder.encode(["sinus rhythm"])


def test_request_timeout_then_retries_then_an_error_naming_the_url(silent_url, api_key):
    encoder = OpenAITextEncoder(FAKE_MODEL, base_url=silent_url, request_timeout=0.1, total_timeout=None, max_retries=1)
    with pytest.raises(ConnectionError, match=rf"{re.escape(silent_url)}/embeddings \(2 attempts, request_timeout 0.1 s\)"):
        encoder.encode(["sinus rhythm"])


def test_refused_connection_names_the_url(api_key):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()  # nothing listens there now
    with pytest.raises(ConnectionError, match=re.escape(url)):
        OpenAITextEncoder(FAKE_MODEL, base_url=url, max_retries=0).encode(["sinus rhythm"])


def test_request_timeout_option_is_merged_onto_the_models_encoder(api_key):
    from ecgaug.pipeline import _text_encoder

    encoder = _text_encoder({"type": "openai", "model": "text-embedding-ada-002"}, {"request_timeout": 5}, None)
    assert isinstance(encoder, OpenAITextEncoder) and encoder.request_timeout == 5 and encoder.model == "text-embedding-ada-002"
    with pytest.raises(ValueError, match="request_timeout"):
        OpenAITextEncoder(request_timeout=0)
    with pytest.raises(ValueError, match="does not accept"):
        get_text_encoder("minilm", request_timeout=5)
