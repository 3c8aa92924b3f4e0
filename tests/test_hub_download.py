"""Published weights by hub id, through huggingface_hub, against a loopback imitation of the hub's file endpoints.

The server answers ``HEAD`` and ``GET /{repo}/resolve/{revision}/{filename}`` with the headers
``hf_hub_download`` reads (``X-Repo-Commit``, ``ETag``, ``Content-Length``); the checkpoints are the
published layout (tests/data/upstream_layout.json) filled as in test_upstream_golden.
"""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from ecgaug.cli import main
from ecgaug.models.convert import upstream_file
from ecgaug.pipeline import DiffuSETSPipeline

from conftest import HashTextEncoder

REPO = "Laiyf/DiffuSETS"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LAYOUT = json.loads((Path(__file__).parent / "data" / "upstream_layout.json").read_text())


class FakeHub(ThreadingHTTPServer):
    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = files  # filename -> content, served for REPO at "main" and at COMMIT
        self.requests: list[tuple[str, str]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _file(self):
        self.server.requests.append((self.command, self.path))
        prefix = f"/{REPO}/resolve/"
        revision, _, filename = self.path[len(prefix):].partition("/") if self.path.startswith(prefix) else ("", "", "")
        if revision not in ("main", COMMIT) or filename not in self.server.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        content = self.server.files[filename]
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        return content

    def do_HEAD(self):
        self._file()

    def do_GET(self):
        content = self._file()
        if content is not None:
            self.wfile.write(content)


def published_checkpoints(folder: Path) -> Path:
    """vae_model.pth and unet_all.pth in the published layout (zeros but the time tables: enough to load and run)."""
    from ecgaug.models.unet import sinusoidal_time_table

    fill = lambda name, shape: sinusoidal_time_table(*shape) if name.endswith("time_emb.embeddings") else torch.zeros(shape)  # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({part: {k: fill(k, v) for k, v in LAYOUT[f"vae_{part}"].items()} for part in ("encoder", "decoder")}, folder / "vae_model.pth")
    torch.save({k: fill(k, v) for k, v in LAYOUT["unet_conditional_k7_l7_c4_t1000"].items()}, folder / "unet_all.pth")
    return folder


@pytest.fixture(scope="module")
def local_folder(tmp_path_factory):
    return published_checkpoints(tmp_path_factory.mktemp("published"))


@pytest.fixture
def hub(local_folder, monkeypatch):
    files = {p.name: p.read_bytes() for p in local_folder.iterdir()}
    files["ptbxl_text_embed.csv"] = ('text,embed\n"Most importantly, the 1st diagnosis is sinus rhythm.","[' + ", ".join(["0.01"] * 1536) + ']"\n').encode()
    server = FakeHub(files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    # what HF_ENDPOINT=http://127.0.0.1:PORT sets when huggingface_hub is imported
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_TOKEN", "")
    # CI runs with HF_HUB_OFFLINE=1 (no network); the fake hub is on loopback, so let the client reach it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield server
    server.shutdown()
    server.server_close()


def test_from_upstream_downloads_by_hub_id_into_the_cache_then_works_offline(hub, local_folder, tmp_path):
    cache = tmp_path / "hub-cache"
    pipe = DiffuSETSPipeline.from_upstream(REPO, cache_dir=cache, text_encoder=HashTextEncoder(1536))
    gets = sorted(path.rsplit("/", 1)[1] for method, path in hub.requests if method == "GET" and "/resolve/" in path)
    assert gets == ["unet_all.pth", "vae_model.pth"]
    assert (cache / "models--Laiyf--DiffuSETS" / "snapshots" / COMMIT / "unet_all.pth").is_file()
    # the same weights as from the local folder: same model id, same output
    local = DiffuSETSPipeline.from_upstream(local_folder, text_encoder=HashTextEncoder(1536))
    assert pipe.model_id == local.model_id and pipe.model_id.startswith("diffusets-published-")
    ecgs = pipe.generate(["sinus rhythm"], age=60, sex="M", heart_rate=70, num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert ecgs.shape == (1, 12, 1000) and torch.isfinite(ecgs).all()

    hub.shutdown()  # no network from here on: the cache serves a pinned commit and "main"
    hub.server_close()
    for revision in (COMMIT, None):
        offline = DiffuSETSPipeline.from_upstream(REPO, cache_dir=cache, revision=revision, local_files_only=True,
                                                  text_encoder=HashTextEncoder(1536))
        assert offline.model_id == pipe.model_id


def test_a_pinned_revision_is_requested_and_the_table_comes_from_the_same_repo(hub, tmp_path):
    path = upstream_file(REPO, "ptbxl_text_embed.csv", revision=COMMIT, cache_dir=tmp_path)
    assert path.read_bytes().startswith(b"text,embed") and COMMIT in str(path)
    assert [p for _, p in hub.requests if "/resolve/" in p] and all(f"/resolve/{COMMIT}/" in p for _, p in hub.requests if "/resolve/" in p)


def test_missing_files_and_offline_misses_are_clear(hub, tmp_path, local_folder):
    with pytest.raises(FileNotFoundError, match="not in the hub cache"):
        upstream_file(REPO, "vae_model.pth", cache_dir=tmp_path / "empty", local_files_only=True)
    with pytest.raises(Exception, match="nothing.pth"):
        upstream_file(REPO, "nothing.pth", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hugging Face repo id"):
        upstream_file(str(tmp_path / "no" / "such" / "folder"), "vae_model.pth")
    with pytest.raises(FileNotFoundError, match="unet_all.pth"):
        upstream_file(tmp_path, "unet_all.pth")
    with pytest.raises(ValueError, match="local folder"):
        upstream_file(local_folder, "vae_model.pth", revision=COMMIT)


def test_convert_cli_takes_a_hub_id_and_a_revision(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["convert", REPO, str(tmp_path / "converted"), "--revision", COMMIT]) == 0
    index = json.loads((tmp_path / "converted" / "model_index.json").read_text())
    assert index["source"] == REPO and index["revision"] == COMMIT
    loaded = DiffuSETSPipeline.from_pretrained(tmp_path / "converted", text_encoder=HashTextEncoder(1536))
    assert loaded.unet.config.text_embed_dim == 1536


def test_generate_cli_with_upstream_hub_id_and_its_published_table(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code = main(["generate", "--report", "sinus rhythm", "--age", "60", "--sex", "M", "--heart_rate", "70", "--out", str(out),
                 "--upstream", REPO, "--revision", COMMIT, "--text_table", "--num_inference_steps", "1", "--device", "cpu"])
    assert code == 0
    meta = json.loads((out / "generation.json").read_text())
    assert meta["upstream"] == REPO and meta["revision"] == COMMIT and meta["model_id"].startswith("diffusets-published-")
    assert meta["text_encoder"] == {"type": "table", "path": None}
