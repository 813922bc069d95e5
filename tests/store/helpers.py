"""Helpers of the store tests: file names and limit, the engine's stand-in, archive builders, snapshots."""

from __future__ import annotations

import io
import json
import math
import stat
import tarfile
import zipfile
from types import SimpleNamespace

from safetensors import safe_open

from service.store import AdapterStore

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
LIMIT = 1024 * 1024  # far above the tiny adapters, small enough to test the limit cheaply


# ---------------------------------------------------------------------------------------------
# The engine's check, stood in for


def inspect_adapter(staged) -> SimpleNamespace:
    """Stand-in for the engine's check: the kind from the config, parameters from the header."""
    folder = staged.directory
    config = json.loads((folder / CONFIG).read_text())
    parameters = 0
    with safe_open(str(folder / WEIGHTS), framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118  (safe_open has keys() but is not iterable)
            parameters += math.prod(weights.get_slice(key).get_shape())
    return SimpleNamespace(kind=config["peft_type"], parameters=parameters)


# ---------------------------------------------------------------------------------------------
# Archive builders


def make_zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(members: list[tuple[str | tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = name if isinstance(name, tarfile.TarInfo) else tarfile.TarInfo(name)
            if info.isreg():
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def tar_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


class NonSeekable(io.RawIOBase):
    """A request body that can only be read forward, like a socket."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)


def snapshot(store: AdapterStore) -> tuple[list[dict], list[str]]:
    """Everything visible about a store: its records and every path under its root."""
    return (
        [record.to_dict() for record in store.list()],
        sorted(str(path.relative_to(store.root)) for path in store.root.rglob("*")),
    )


def assert_staging_empty(store: AdapterStore) -> None:
    assert list((store.root / ".staging").iterdir()) == []


