"""Which files an adapter upload may hold: the rules every upload form (form files, archive, folder) shares."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from service.errors import PickleRefused, UploadError
from service.peft_format import CONFIG_FILE, WEIGHTS_FILE

ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)
# Accepted so a folder written by save_pretrained can be uploaded as is, but not kept.
DROPPED_FILES = frozenset({"README.md"})
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})

PICKLE_ADVICE = (
    "DeltaServe never loads pickle files because unpickling can run arbitrary code. "
    "Convert the adapter where you trust the file: load it with PeftModel.from_pretrained(base_model, path) "
    "and call model.save_pretrained(out_dir, safe_serialization=True), which writes "
    f"{WEIGHTS_FILE}; upload that file with {CONFIG_FILE}"
)


def refuse_pickles(names: Iterable[str]) -> None:
    for name in names:
        if PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES:
            raise PickleRefused(f"{name} is a pickle file. {PICKLE_ADVICE}")


def check_file_set(names: Iterable[str]) -> None:
    names = set(names)
    unknown = sorted(names - set(ADAPTER_FILES) - DROPPED_FILES)
    if unknown:
        raise UploadError(
            f"unexpected file(s) {', '.join(unknown)}; an adapter upload holds only "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (and optionally README.md)"
        )
    missing = [name for name in ADAPTER_FILES if name not in names]
    if missing:
        raise UploadError(
            f"the upload is missing {' and '.join(missing)}; PeftModel.save_pretrained(dir) "
            f"writes both {CONFIG_FILE} and {WEIGHTS_FILE}"
        )


def sentence(exc: BaseException) -> str:
    """An exception's text without a closing period, to end one of our messages (which have none)."""
    return str(exc).rstrip(". ")
