"""Which files an adapter upload may hold: the rules every upload form (form files, archive, folder) shares."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from service.errors import PickleRefused, UploadError
from service.peft_format import ADAPTERHUB_WEIGHTS_FILE, CONFIG_FILE, HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, WEIGHTS_FILE

ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE)  # what a stored version holds
# A folder AdapterHub saved from a model with a head also holds the head. It is staged apart, checked against
# the base model's own output layer, and never stored.
HEAD_FILES = (HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE)
HEAD_DIR = "head"
# Accepted so a folder written by save_pretrained can be uploaded as is, but not kept.
DROPPED_FILES = frozenset({"README.md"})
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})
UPLOAD_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, ADAPTERHUB_WEIGHTS_FILE, *HEAD_FILES})

PICKLE_ADVICE = (
    "DeltaServe never loads pickle files because unpickling can run arbitrary code. "
    "Convert the adapter where you trust the file: load it with PeftModel.from_pretrained(base_model, path) "
    "and call model.save_pretrained(out_dir, safe_serialization=True), which writes "
    f"{WEIGHTS_FILE}; upload that file with {CONFIG_FILE}"
)


ADAPTERHUB_PICKLE_ADVICE = (
    "DeltaServe never loads pickle files because unpickling can run arbitrary code. "
    "Save the adapter with AdapterHub's model.save_adapter(out_dir, name, use_safetensors=True), which writes "
    f"{CONFIG_FILE} and {ADAPTERHUB_WEIGHTS_FILE}, and upload those"
)
# The pickles AdapterHub's save_adapter writes without use_safetensors.
_ADAPTERHUB_PICKLES = ("pytorch_adapter", "pytorch_model_head")


def refuse_pickles(names: Iterable[str]) -> None:
    for name in names:
        path = PurePosixPath(name)
        if path.suffix.lower() in PICKLE_SUFFIXES:
            advice = ADAPTERHUB_PICKLE_ADVICE if path.stem in _ADAPTERHUB_PICKLES else PICKLE_ADVICE
            raise PickleRefused(f"{name} is a pickle file. {advice}")


def staged_names(names: Iterable[str]) -> dict[str, str]:
    """Where each uploaded file goes in the staging folder, by its name: the adapter's config and weights (under
    the stored names), a head into HEAD_DIR; files not listed (README.md) are dropped. Refuses any other set."""
    names = set(names)
    unknown = sorted(names - UPLOAD_FILES - DROPPED_FILES)
    if unknown:
        raise UploadError(
            f"unexpected file(s) {', '.join(unknown)}; an adapter upload holds only {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} (PEFT's save_pretrained) or {ADAPTERHUB_WEIGHTS_FILE} (AdapterHub's save_adapter), "
            f"optionally AdapterHub's {HEAD_CONFIG_FILE} and {HEAD_WEIGHTS_FILE}, and README.md"
        )
    weights = sorted(names & {WEIGHTS_FILE, ADAPTERHUB_WEIGHTS_FILE})
    if len(weights) > 1:
        raise UploadError(f"the upload holds both {weights[0]} and {weights[1]}; send the adapter's one weights file")
    missing = [name for name in (CONFIG_FILE,) if name not in names] + ([] if weights else [WEIGHTS_FILE])
    if missing:
        raise UploadError(
            f"the upload is missing {' and '.join(missing)}; PeftModel.save_pretrained(dir) writes both "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (AdapterHub's save_adapter: {CONFIG_FILE} and {ADAPTERHUB_WEIGHTS_FILE})"
        )
    head = names & set(HEAD_FILES)
    if head and len(head) != len(HEAD_FILES):
        raise UploadError(f"a head comes as both {HEAD_CONFIG_FILE} and {HEAD_WEIGHTS_FILE}; the upload has one")
    return {CONFIG_FILE: CONFIG_FILE, weights[0]: WEIGHTS_FILE, **{name: f"{HEAD_DIR}/{name}" for name in sorted(head)}}


def sentence(exc: BaseException) -> str:
    """An exception's text without a closing period, to end one of our messages (which have none)."""
    return str(exc).rstrip(". ")
