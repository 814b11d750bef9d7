"""A request's files on disk: stored under LABSHARE_FILES_DIR by a random key (never by a
name a person chose or could guess), counted as they stream in, refused past
LABSHARE_MAX_FILE_BYTES, and read back only through the request they belong to."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from core.errors import AppError, Invalid
from core.settings import get_settings

CHUNK = 256 * 1024
# Types a browser may show inline; anything else is served as bytes to save.
SHOWN = {"application/pdf", "image/png", "image/jpeg", "text/plain", "text/csv"}
UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]]+", re.UNICODE)


class FileTooLarge(AppError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"file: larger than {limit:,} bytes", limit=limit)


def _path(key: str) -> Path:
    return get_settings().files_path / key[:2] / key


def clean_name(name: str | None) -> str:
    """A file name safe to show and to send back in Content-Disposition."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = UNSAFE_NAME.sub("_", base).strip("._ ")[:200]
    if not base:
        raise Invalid("file: the upload has no file name")
    return base


def content_type_of(declared: str | None) -> str:
    kind = (declared or "").split(";")[0].strip().lower()
    return kind if kind in SHOWN else "application/octet-stream"


def store(stream: BinaryIO) -> tuple[str, int, str]:
    """Write the stream to a new key; (key, size, sha256). Nothing stays behind when it is
    too large or empty."""
    limit = get_settings().max_file_bytes
    key = secrets.token_hex(24)
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("xb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(limit)
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise Invalid("file: the file is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return key, size, digest.hexdigest()


def discard(key: str) -> None:
    _path(key).unlink(missing_ok=True)


def chunks(key: str) -> Iterator[bytes]:
    with _path(key).open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def exists(key: str) -> bool:
    return _path(key).is_file()
