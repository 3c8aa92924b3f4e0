import argparse
import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from ecgaug.commands import ptbxl as ptbxl_command
from ecgaug.data.download import PTBXL_ZIP_NAME, download_ptbxl
from ptbxl_fixture import make_ptbxl

RELEASE_FOLDER = PTBXL_ZIP_NAME.removesuffix(".zip")


def zip_folder(folder, prefix: str, skip=()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name not in skip:
                archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(source folder, zip bytes) of a small fake PTB-XL release."""
    source = make_ptbxl(tmp_path_factory.mktemp("release"), num_records=4)
    return source, zip_folder(source, RELEASE_FOLDER)


class Server:
    """A local HTTP server for one file, with Range support, request log and failure modes."""

    def __init__(self, payload: bytes, *, truncate_first: int = 0, truncate_at: int = 0, ignore_range: bool = False):
        self.payload = payload
        self.truncate_first = truncate_first  # how many responses are cut short
        self.truncate_at = truncate_at  # bytes of body sent before a cut
        self.ignore_range = ignore_range
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != f"/mirror/{PTBXL_ZIP_NAME}":
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start, size = 0, len(server.payload)
                if header and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_first > 0:
                    server.truncate_first -= 1
                    body = body[: server.truncate_at]
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/mirror/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def assert_extracted(root, source):
    pd.testing.assert_frame_equal(pd.read_csv(root / "ptbxl_database.csv"), pd.read_csv(source / "ptbxl_database.csv"))
    assert (root / "records100/00000/00004_lr.dat").read_bytes() == (source / "records100/00000/00004_lr.dat").read_bytes()
    assert not list(root.rglob("*.part")) and not list(root.rglob("*.extracting"))


def test_interrupted_download_resumes(release, tmp_path):
    source, payload = release
    cut = len(payload) // 3
    with Server(payload, truncate_first=1, truncate_at=cut) as server:
        download_ptbxl(tmp_path, base_url=server.base_url, retry_wait=0)
    assert server.ranges == [None, f"bytes={cut}-"]
    assert_extracted(tmp_path, source)
    assert not (tmp_path / PTBXL_ZIP_NAME).exists()


def test_partial_file_from_an_earlier_run_is_resumed(release, tmp_path):
    source, payload = release
    (tmp_path / (PTBXL_ZIP_NAME + ".part")).write_bytes(payload[:1000])
    with Server(payload) as server:
        download_ptbxl(tmp_path, base_url=server.base_url, keep_zip=True, sha256=hashlib.sha256(payload).hexdigest())
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / PTBXL_ZIP_NAME).read_bytes() == payload
    assert_extracted(tmp_path, source)


def test_server_ignoring_range_restarts_from_zero(release, tmp_path):
    source, payload = release
    (tmp_path / (PTBXL_ZIP_NAME + ".part")).write_bytes(payload[:1000])
    with Server(payload, ignore_range=True) as server:
        download_ptbxl(tmp_path, base_url=server.base_url, keep_zip=True)
    assert (tmp_path / PTBXL_ZIP_NAME).read_bytes() == payload


def test_existing_dataset_is_not_downloaded(release, tmp_path):
    source, payload = release
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    with Server(payload) as server:
        download_ptbxl(tmp_path, base_url=server.base_url)
    assert server.ranges == []


def test_gives_up_after_retries_and_keeps_the_part(release, tmp_path):
    _, payload = release
    with Server(payload, truncate_first=10, truncate_at=500) as server:
        with pytest.raises(RuntimeError, match="failed after 2 attempts .* run the same command again to resume"):
            download_ptbxl(tmp_path, base_url=server.base_url, max_retries=1, retry_wait=0)
    assert (tmp_path / (PTBXL_ZIP_NAME + ".part")).stat().st_size == 1000
    assert server.ranges == [None, "bytes=500-"]


def test_checks(release, tmp_path):
    source, payload = release
    with Server(payload) as server:
        with pytest.raises(ValueError, match="should have SHA-256 0+, but the download has"):
            download_ptbxl(tmp_path / "a", base_url=server.base_url, sha256="0" * 64)
        assert not list((tmp_path / "a").iterdir())
        with pytest.raises(RuntimeError, match="HTTP 404"):
            download_ptbxl(tmp_path / "b", base_url=server.base_url + "missing/", max_retries=0)
    with Server(zip_folder(source, RELEASE_FOLDER, skip=("ptbxl_database.csv",))) as server:
        with pytest.raises(ValueError, match="should contain ptbxl_database.csv"):
            download_ptbxl(tmp_path / "c", base_url=server.base_url)


def test_cli_download(release, tmp_path, capsys):
    source, payload = release
    parser = argparse.ArgumentParser()
    ptbxl_command.register(parser.add_subparsers(dest="command", required=True))
    with Server(payload) as server:
        args = parser.parse_args(["ptbxl", "download", str(tmp_path), "--base_url", server.base_url])
        assert args.func(args) == 0
    assert_extracted(tmp_path, source)
    assert "ecgaug ptbxl prepare" in capsys.readouterr().out
