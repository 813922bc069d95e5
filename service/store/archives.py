"""Unpacking an uploaded zip or tar.gz archive into a staging folder, safely.

Archives are told apart by magic bytes. Nothing is ever unpickled; members are checked one by one (no absolute
paths, no `..`, no links or devices, at most MAX_ARCHIVE_MEMBERS) and written one by one, never with
extractall; the size limit is enforced on the body and again on every byte written, so a zip bomb stops at
the limit instead of filling the disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.errors import PayloadTooLarge, UnsafeArchive, UploadError
from service.peft_format import CONFIG_FILE, WEIGHTS_FILE
from service.store.file_set import refuse_pickles, sentence, staged_names

MAX_ARCHIVE_MEMBERS = 8
# Room for the container's own bytes (tar headers and padding, zip directory) on top of the
# limit on the adapter files, so an archive of an adapter just under the limit still passes.
ARCHIVE_OVERHEAD_BYTES = 64 * 1024
# Archivers on macOS add these next to the real files; they are skipped, never written.
IGNORED_TOP_FOLDERS = frozenset({"__MACOSX"})
IGNORED_FILES = frozenset({".DS_Store"})

_CHUNK = 1024 * 1024
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
# Errors that mean "this archive is broken": gzip.BadGzipFile is an OSError, zipfile raises
# NotImplementedError for compression methods it lacks.
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError)
_TAR_READ_ERRORS = (tarfile.TarError, zlib.error, EOFError, OSError)
_TOO_MANY_MEMBERS = f"the archive has more than {MAX_ARCHIVE_MEMBERS} members; an adapter archive needs 2 to 5"


@dataclass(frozen=True)
class _Member:
    """One archive entry after its path and type were checked."""

    parts: tuple[str, ...]
    is_dir: bool
    info: zipfile.ZipInfo | tarfile.TarInfo  # to read it back with


def unpack_archive(data: bytes | bytearray | memoryview | BinaryIO, dest: Path, max_bytes: int) -> None:
    """Unpack a zip or tar.gz body (bytes or a binary file object) into the empty folder `dest`: only the
    adapter files, each checked (see the module's docstring)."""
    body_limit = max_bytes + ARCHIVE_OVERHEAD_BYTES
    with _as_seekable(data, dest, body_limit, max_bytes) as body:
        start = body.tell()
        size = body.seek(0, os.SEEK_END) - start
        body.seek(start)
        if size > body_limit:
            raise PayloadTooLarge.upload(max_bytes)
        magic = body.read(4)
        body.seek(start)
        if magic in _ZIP_MAGIC:
            _unpack_zip(body, dest, max_bytes)
        elif magic[:2] == _GZIP_MAGIC:
            _unpack_tar_gz(body, dest, max_bytes)
        else:
            raise UploadError(
                "the upload is not a zip or tar.gz archive; send a .zip or .tar.gz of "
                f"{CONFIG_FILE} and {WEIGHTS_FILE}, or send the two files as form fields"
            )


def _unpack_zip(body: BinaryIO, dest: Path, max_bytes: int) -> None:
    reading = _corrupt_archive("zip", _ZIP_READ_ERRORS)
    with reading:
        archive = zipfile.ZipFile(body)
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise UnsafeArchive(_TOO_MANY_MEMBERS)
        members: list[_Member] = []
        declared = 0
        for info in infos:
            # The upper 16 bits of external_attr hold the Unix mode when the archiver set one.
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link; links are not accepted")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchive(f"archive member {info.filename!r} is not a regular file or folder")
            parts = _safe_parts(info.filename)
            if info.flag_bits & 0x1:
                raise UploadError(f"archive member {info.filename!r} is encrypted; send an unencrypted archive")
            is_dir = info.is_dir() or kind == stat.S_IFDIR
            if not is_dir:
                declared += info.file_size
            members.append(_Member(parts, is_dir, info))
        if declared > max_bytes:
            raise PayloadTooLarge.upload(max_bytes)

        def open_member(member: _Member) -> BinaryIO:
            return archive.open(member.info)  # type: ignore[arg-type, return-value]

        _write_members(members, open_member, dest, max_bytes, reading)


def _unpack_tar_gz(body: BinaryIO, dest: Path, max_bytes: int) -> None:
    reading = _corrupt_archive("tar.gz", _TAR_READ_ERRORS)
    with reading:
        archive = tarfile.open(fileobj=body, mode="r:gz")  # noqa: SIM115 (opened inside the error guard)
    with archive:
        members: list[_Member] = []
        declared = 0
        # Read headers one at a time so the count and size limits stop a hostile archive
        # before tarfile decompresses (to skip over) the data of yet another member.
        while True:
            with reading:
                info = archive.next()
            if info is None:
                break
            if len(members) == MAX_ARCHIVE_MEMBERS:
                raise UnsafeArchive(_TOO_MANY_MEMBERS)
            if info.issym() or info.islnk():
                raise UnsafeArchive(f"archive member {info.name!r} is a link; links are not accepted")
            if not (info.isreg() or info.isdir()):
                raise UnsafeArchive(f"archive member {info.name!r} is not a regular file or folder")
            parts = _safe_parts(info.name)
            if info.isreg():
                declared += info.size
                if declared > max_bytes:
                    raise PayloadTooLarge.upload(max_bytes)
            members.append(_Member(parts, info.isdir(), info))

        def open_member(member: _Member) -> BinaryIO:
            handle = archive.extractfile(member.info)  # type: ignore[arg-type]
            if handle is None:  # only for non-regular members, which were refused above
                raise UnsafeArchive("archive member is not a regular file")
            return handle  # type: ignore[return-value]

        _write_members(members, open_member, dest, max_bytes, reading)


def _safe_parts(raw_name: str) -> tuple[str, ...]:
    """Split an archive member's path, refusing anything that could point outside the folder."""
    name = raw_name.replace("\\", "/")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchive(f"archive member {raw_name!r} has an absolute path; paths must be relative")
    if "\x00" in name:
        raise UnsafeArchive(f"archive member {raw_name!r} has a NUL byte in its name")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"archive member {raw_name!r} contains '..'; paths must stay inside the archive")
    return parts


def _write_members(
    members: list[_Member],
    open_member: Callable[[_Member], BinaryIO],
    dest: Path,
    max_bytes: int,
    reading: _corrupt_archive,
) -> None:
    """Map members to adapter file names, then copy the kept ones with a running byte count."""
    if any(not m.is_dir and not m.parts for m in members):
        raise UploadError("the archive holds a file with an empty name")
    files = [m for m in members if not m.is_dir and not _is_ignored(m.parts)]
    refuse_pickles(m.parts[-1] for m in files)

    # Files sit at the top, or all inside one top-level folder (what zipping a folder gives).
    depths = {len(m.parts) for m in files}
    tops = {m.parts[0] for m in files}
    if depths - {1, 2} or (2 in depths and (1 in depths or len(tops) > 1)):
        shown = ", ".join(sorted("/".join(m.parts) for m in files))
        raise UploadError(
            f"the archive must hold {CONFIG_FILE} and {WEIGHTS_FILE} at its top level or inside "
            f"one top-level folder; it holds: {shown}"
        )
    by_name: dict[str, _Member] = {}
    for member in files:
        name = member.parts[-1]
        if name in by_name:
            raise UploadError(f"the archive holds {name} more than once")
        by_name[name] = member
    plan = staged_names(by_name)

    written = 0
    for name, staged in plan.items():
        (dest / staged).parent.mkdir(exist_ok=True)
        with reading:
            source = open_member(by_name[name])
        with source, open(dest / staged, "xb") as target:
            while True:
                with reading:  # decompression errors are the archive's fault; write errors are not
                    chunk = source.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > max_bytes:  # the real count, whatever the headers declared
                    raise PayloadTooLarge.upload(max_bytes)
                target.write(chunk)


def _is_ignored(parts: tuple[str, ...]) -> bool:
    return parts[0] in IGNORED_TOP_FOLDERS or parts[-1] in IGNORED_FILES


@contextlib.contextmanager
def _as_seekable(
    data: bytes | bytearray | memoryview | BinaryIO, dest: Path, limit: int, max_bytes: int
) -> Iterator[BinaryIO]:
    """A seekable binary stream over bytes or a file object.

    A stream that cannot seek is copied to a temporary file beside `dest`, stopping past `limit`.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield io.BytesIO(data)
        return
    if getattr(data, "seekable", lambda: False)():
        yield data  # type: ignore[misc,unused-ignore]
        return
    with tempfile.TemporaryFile(dir=dest.parent) as spool:
        copied = 0
        while chunk := data.read(_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise PayloadTooLarge.upload(max_bytes)
            spool.write(chunk)
        spool.seek(0)
        yield spool  # type: ignore[misc,unused-ignore]


class _corrupt_archive:
    """Reusable guard: errors raised while reading an archive become a 400 saying it is corrupt."""

    def __init__(self, label: str, errors: tuple[type[BaseException], ...]):
        self.label, self.errors = label, errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc is not None and isinstance(exc, self.errors):
            raise UploadError(f"the {self.label} archive is corrupt: {sentence(exc)}") from exc


# ---------------------------------------------------------------------------------------------
# Local folders (demo adapters, scripts): copy only the two adapter files
