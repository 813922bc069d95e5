"""Turning an upload into a staging folder that holds exactly one adapter, safely.

An upload arrives as form files (file name -> bytes), as one archive body (archives.py), or as a local
folder. Either way the result is a folder holding only `adapter_config.json` and
`adapter_model.safetensors` (file_set.py says which files may come: AdapterHub's `adapter.safetensors` is
staged under that name), both checked, and an AdapterHub head, if the upload has one, in `head/` to be
checked and dropped; nothing is ever unpickled or passed to torch.load, and the size limit holds on every
byte written.

These functions write into an empty folder the caller created and do no cleanup: on error
the caller removes the folder (AdapterStore does).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from safetensors import safe_open

from service.errors import InvalidAdapterWeights, InvalidJson, JsonTooLarge, PayloadTooLarge, PickleRefused, UploadError
from service.json_limits import read_json_file
from service.peft_format import CONFIG_FILE, CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, WEIGHTS_FILE
from service.store.archives import unpack_archive
from service.store.file_set import (
    ADAPTERHUB_PICKLE_ADVICE,
    ADAPTERHUB_WEIGHTS_FILE,
    HEAD_DIR,
    PICKLE_ADVICE,
    PICKLE_SUFFIXES,
    UPLOAD_FILES,
    refuse_pickles,
    sentence,
    staged_names,
)


@dataclass(frozen=True)
class StagedSummary:
    """What the checks learned about a staged adapter without loading any weights."""

    config: dict
    parameters: int  # total elements over all tensors in the safetensors file
    bytes: int  # size of the two kept files
    head: Path | None = None  # an AdapterHub head, staged to be checked against the base model, never kept


# ---------------------------------------------------------------------------------------------
# Form files


def stage_files(files: Mapping[str, bytes], dest: Path, max_bytes: int) -> StagedSummary:
    """Write form files (name -> content) into the empty folder `dest` and check them."""
    by_name: dict[str, bytes] = {}
    for raw_name, content in files.items():
        # Browsers may send a relative path for folder uploads; only the last part names the file.
        name = PurePosixPath(str(raw_name).replace("\\", "/")).name
        if name in ("", ".", ".."):
            raise UploadError(f"uploaded file name {raw_name!r} is not a file name")
        if name in by_name:
            raise UploadError(f"{name} was uploaded more than once")
        by_name[name] = content

    refuse_pickles(by_name)
    if sum(len(content) for content in by_name.values()) > max_bytes:
        raise PayloadTooLarge.upload(max_bytes)
    for name, staged in staged_names(by_name).items():
        (dest / staged).parent.mkdir(exist_ok=True)
        with open(dest / staged, "xb") as handle:
            handle.write(by_name[name])
    return check_staged(dest)


# ---------------------------------------------------------------------------------------------
# Archives


def stage_archive(data: bytes | bytearray | memoryview | BinaryIO, dest: Path, max_bytes: int) -> StagedSummary:
    """Unpack a zip or tar.gz body (bytes or a binary file object) into the empty folder `dest` and check it."""
    unpack_archive(data, dest, max_bytes)
    return check_staged(dest)


def stage_directory(src: Path, dest: Path, max_bytes: int) -> StagedSummary:
    """Copy the adapter files of a local folder written by save_pretrained (or AdapterHub's save_adapter) into
    `dest`.

    Other files there (README.md, training_args.bin, ...) are left alone, never opened.
    """
    src = Path(src)
    if not src.is_dir():
        raise UploadError(f"{src} is not a folder")
    present = {name for name in UPLOAD_FILES if (src / name).is_file()}
    if not present & {WEIGHTS_FILE, ADAPTERHUB_WEIGHTS_FILE}:
        for stem, advice in (("adapter_model", PICKLE_ADVICE), ("pytorch_adapter", ADAPTERHUB_PICKLE_ADVICE)):
            if any((src / f"{stem}{suffix}").is_file() for suffix in PICKLE_SUFFIXES):
                raise PickleRefused(f"{src} holds only pickle adapter weights. {advice}")
    plan = staged_names(present)
    if sum((src / name).stat().st_size for name in plan) > max_bytes:
        raise PayloadTooLarge.upload(max_bytes)
    for name, staged in plan.items():
        (dest / staged).parent.mkdir(exist_ok=True)
        shutil.copyfile(src / name, dest / staged)
    return check_staged(dest)


# ---------------------------------------------------------------------------------------------
# Checks shared by every form


def check_staged(folder: Path) -> StagedSummary:
    """Check a staged folder: the config is a JSON object and the safetensors header parses."""
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise UploadError(f"the upload has no {path.name}")
    config = _parse_config(config_path)
    if not isinstance(config, dict):
        raise UploadError(f"{CONFIG_FILE} must hold a JSON object, not {type(config).__name__}")
    head = folder / HEAD_DIR
    return StagedSummary(
        config=config,
        parameters=count_parameters(weights_path),
        bytes=config_path.stat().st_size + weights_path.stat().st_size,
        head=head if head.is_dir() else None,
    )


def _parse_config(config_path: Path) -> object:
    """adapter_config.json within its size and depth limits: a deep document is a 400, never a RecursionError."""
    try:
        return read_json_file(config_path, max_bytes=CONFIG_MAX_BYTES, max_depth=CONFIG_MAX_DEPTH)
    except JsonTooLarge as exc:
        raise PayloadTooLarge(exc.message) from exc
    except InvalidJson as exc:
        raise UploadError(exc.message) from exc


def count_parameters(weights_path: Path) -> int:
    """Total elements over all tensors, read from the safetensors header only (no tensor data).

    safe_open also checks that the header's offsets cover the file exactly, so a truncated or
    padded file is refused here rather than when the engine loads it.
    """
    try:
        with safe_open(str(weights_path), framework="pt") as weights:
            keys = list(weights.keys())
            total = 0
            for key in keys:
                elements = 1
                for dim in weights.get_slice(key).get_shape():
                    elements *= dim
                total += elements
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError/ValueError
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} is not a valid safetensors file: {sentence(exc)}") from exc
    if not keys:
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} holds no tensors")
    return total
