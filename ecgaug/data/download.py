"""Download PTB-XL 1.0.3 from PhysioNet (standard library + tqdm only).

``download_ptbxl(root)`` fetches the release zip (about 1.7 GB) to ``root``, resuming a partial
``.part`` file with an HTTP ``Range`` request and retrying dropped connections, checks it (the
SHA-256 when one is given; always that it is a zip holding ``ptbxl_database.csv`` and that every
member's CRC matches while extracting), extracts the release folder's contents into ``root``
and deletes the zip. ``ptbxl_database.csv`` is written last, so its presence means a complete
extraction; a ``root`` that has it is left alone.

PTB-XL: Wagner et al., Scientific Data 7, 154 (2020), https://doi.org/10.13026/kfzx-aw45,
licence CC BY 4.0.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

__all__ = ["DEFAULT_BASE_URL", "PTBXL_ZIP_NAME", "download_ptbxl", "download_url", "extract_ptbxl_zip", "ptbxl_exists"]

PTBXL_VERSION = "1.0.3"
PTBXL_ZIP_NAME = f"ptb-xl-a-large-publicly-available-electrocardiography-dataset-{PTBXL_VERSION}.zip"
DEFAULT_BASE_URL = "https://physionet.org/static/published-projects/ptb-xl/"
REQUIRED_FILES = ("scp_statements.csv", "ptbxl_database.csv")  # extracted last, in this order


def ptbxl_exists(root) -> bool:
    """Whether ``root`` holds an extracted PTB-XL (``ptbxl_database.csv`` and ``scp_statements.csv``)."""
    return all((Path(root) / name).is_file() for name in REQUIRED_FILES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _RetryableError(ConnectionError):
    """A transfer that stopped early; the ``.part`` file is kept and resumed."""


def _fetch(url: str, part: Path, *, timeout: float, chunk_size: int) -> None:
    """Fetch ``url`` into ``part``, continuing from its current size when the server allows."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ecgaug"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to send: complete only if the sizes agree
            match = re.fullmatch(r"bytes \*/(\d+)", error.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == start:
                return
            part.unlink()
            raise _RetryableError(f"the server rejected resuming at byte {start}; starting over") from error
        raise
    with response:
        if start and response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                raise ValueError(f"{url} answered Range bytes={start}- with Content-Range {response.headers.get('Content-Range')!r}")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        else:  # 200: the server sent the whole file
            start, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        with open(part, mode) as file, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name.removesuffix(".part")
        ) as bar:
            while True:
                try:
                    block = response.read(chunk_size)
                except http.client.IncompleteRead as error:
                    file.write(error.partial)
                    raise _RetryableError(f"connection closed after {part.stat().st_size} bytes") from error
                if not block:
                    break
                file.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _RetryableError(f"connection closed after {size} of {total} bytes")


def download_url(
    url: str,
    path,
    *,
    sha256: str | None = None,
    max_retries: int = 5,
    retry_wait: float = 5.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``path``, resumably.

    Bytes go to ``path + ".part"``, which survives interruptions: a later call (or the next
    retry) asks for the rest with ``Range: bytes=N-``; a server that ignores ``Range`` sends the
    whole file again. ``path`` appears only once the download is complete (and matches
    ``sha256`` when given).

    Args:
        url: HTTP(S) URL.
        path: Destination file.
        sha256: Expected hex SHA-256 of the file, or ``None`` to skip the check.
        max_retries: Further attempts after a dropped connection or timeout.
        retry_wait: Seconds before the first retry, doubled each time.
        timeout: Socket timeout in seconds.
        chunk_size: Bytes read at a time.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(max_retries + 1):
        try:
            _fetch(url, part, timeout=timeout, chunk_size=chunk_size)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500:  # 4xx will not change by retrying
                raise RuntimeError(f"Downloading {url} failed: HTTP {error.code} {error.reason}. Check the URL or --base_url.") from error
            failure = error
        except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets, _RetryableError
            failure = error
        if attempt == max_retries:
            size = part.stat().st_size if part.exists() else 0
            raise RuntimeError(
                f"Downloading {url} failed after {max_retries + 1} attempts ({failure}). "
                f"{size} bytes are kept in {part}; run the same command again to resume."
            ) from failure
        wait = retry_wait * 2**attempt
        tqdm.write(f"Download interrupted ({failure}); resuming in {wait:.0f} s (attempt {attempt + 2} of {max_retries + 1}).")
        time.sleep(wait)
    if sha256 is not None:
        actual = _sha256(part)
        if actual != sha256.lower():
            part.unlink()
            raise ValueError(f"{url} should have SHA-256 {sha256}, but the download has {actual}; it was deleted, run again.")
    os.replace(part, path)
    return path


def extract_ptbxl_zip(zip_path, root) -> Path:
    """Extract the release folder of a PTB-XL zip into ``root`` (required files last).

    Raises:
        ValueError: the file is not a zip, holds no ``ptbxl_database.csv``, has an unsafe member
            path, or a member's CRC does not match (``zipfile.BadZipFile``, a ``ValueError``).
    """
    zip_path, root = Path(zip_path), Path(root)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{zip_path} is not a valid zip file ({error}); delete it and download again.") from error
    with archive:
        names = [name for name in archive.namelist() if PurePosixPath(name).name == "ptbxl_database.csv"]
        if not names:
            raise ValueError(f"{zip_path} should contain ptbxl_database.csv, but does not; is it the PTB-XL release zip?")
        prefix = str(PurePosixPath(min(names, key=len)).parent)
        prefix = "" if prefix == "." else prefix + "/"
        members = [info for info in archive.infolist() if info.filename.startswith(prefix) and not info.is_dir()]
        members.sort(key=lambda info: REQUIRED_FILES.index(info.filename[len(prefix):]) if info.filename[len(prefix):] in REQUIRED_FILES else -1)
        for info in tqdm(members, desc="Extracting PTB-XL", unit="file"):
            relative = PurePosixPath(info.filename[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"{zip_path} has an unsafe member path {info.filename!r}")
            target = root.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".extracting")
            with archive.open(info) as source, open(tmp, "wb") as destination:
                shutil.copyfileobj(source, destination)  # raises BadZipFile on a CRC mismatch
            os.replace(tmp, target)
    return root


def download_ptbxl(
    root,
    *,
    base_url: str = DEFAULT_BASE_URL,
    sha256: str | None = None,
    force: bool = False,
    keep_zip: bool = False,
    max_retries: int = 5,
    retry_wait: float = 5.0,
    timeout: float = 60.0,
) -> Path:
    """Download and extract PTB-XL 1.0.3 into ``root`` unless it is already there.

    Args:
        root: Folder that will hold ``ptbxl_database.csv``, ``records100/``, ``records500/``...
        base_url: Folder URL holding ``PTBXL_ZIP_NAME`` (PhysioNet, or a mirror).
        sha256: Expected SHA-256 of the zip, when known.
        force: Download and extract even if ``root`` already holds PTB-XL.
        keep_zip: Keep the zip in ``root`` after extraction.
        max_retries, retry_wait, timeout: As in :func:`download_url`.

    Returns:
        ``Path(root)``.
    """
    root = Path(root)
    if ptbxl_exists(root) and not force:
        tqdm.write(f"PTB-XL is already in {root}; nothing to download (pass force=True / --force to download again).")
        return root
    root.mkdir(parents=True, exist_ok=True)
    zip_path = root / PTBXL_ZIP_NAME
    if not zip_path.exists():
        url = base_url.rstrip("/") + "/" + PTBXL_ZIP_NAME
        download_url(url, zip_path, sha256=sha256, max_retries=max_retries, retry_wait=retry_wait, timeout=timeout)
    elif sha256 is not None and _sha256(zip_path) != sha256.lower():
        raise ValueError(f"{zip_path} should have SHA-256 {sha256}, but does not; delete it and download again.")
    extract_ptbxl_zip(zip_path, root)
    if not keep_zip:
        zip_path.unlink()
    return root
