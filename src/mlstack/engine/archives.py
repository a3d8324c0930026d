"""One file in and out of the tar streams Docker's archive API speaks (no docker import)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import IO


def write_single(raw: IO[bytes], source: Path, name: str) -> None:
    """`source` as the only member `name` of a tar written to `raw` (root's, mode 0644)."""
    with tarfile.open(fileobj=raw, mode="w:") as tar:
        info = tar.gettarinfo(str(source), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o644
        with open(source, "rb") as f:
            tar.addfile(info, f)
    raw.seek(0)


def extract_single(raw: IO[bytes], dest: Path) -> bool:
    """The first member of the tar in `raw` written to `dest`; False when it is no file."""
    raw.seek(0)
    with tarfile.open(fileobj=raw, mode="r:") as tar:
        member = tar.next()
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            return False
        with open(dest, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    return True
