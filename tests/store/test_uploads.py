"""Uploads as form files, archives and folders, and every refusal: a typed error, and the store exactly as it was."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest
from safetensors.torch import save as save_tensors

from service import errors
from service.store import AdapterStore, StagedAdapter
from tests.store.helpers import (
    CONFIG,
    LIMIT,
    WEIGHTS,
    NonSeekable,
    assert_staging_empty,
    inspect_adapter,
    make_tar_gz,
    make_zip,
    snapshot,
    tar_info,
    zip_symlink,
)

# ---------------------------------------------------------------------------------------------
# Upload forms


def _archive_cases(files: dict[str, bytes]) -> dict[str, bytes]:
    flat = list(files.items())
    nested = [(f"my-adapter/{name}", data) for name, data in flat]
    return {
        "zip": make_zip(flat),
        "zip-folder": make_zip([("my-adapter/", b""), *nested, ("my-adapter/README.md", b"# hi")]),
        "zip-macos": make_zip([*nested, ("__MACOSX/my-adapter/._adapter_config.json", b"junk")]),
        "tar.gz": make_tar_gz(flat),
        "tar.gz-folder": make_tar_gz([(tar_info("my-adapter", tarfile.DIRTYPE), b""), *nested]),
        "tar.gz-dot": make_tar_gz([(f"./{name}", data) for name, data in flat]),
    }


@pytest.mark.parametrize("case", ["zip", "zip-folder", "zip-macos", "tar.gz", "tar.gz-folder", "tar.gz-dot"])
@pytest.mark.parametrize("as_stream", ["bytes", "file", "non-seekable"])
def test_archive_upload(store, adapters, case, as_stream):
    lora = adapters["lora"]
    body = _archive_cases(lora)[case]
    data = {"bytes": body, "file": io.BytesIO(body), "non-seekable": NonSeekable(body)}[as_stream]
    staged = store.stage_archive(data)
    assert sorted(p.name for p in staged.directory.iterdir()) == [CONFIG, WEIGHTS]
    record = store.put("packed", staged, inspect_adapter).record
    assert record.sha256 == hashlib.sha256(lora[WEIGHTS]).hexdigest()
    assert (store.files("packed") / CONFIG).read_bytes() == lora[CONFIG]
    assert sorted(p.name for p in store.files("packed").iterdir()) == [CONFIG, WEIGHTS]
    assert_staging_empty(store)


def test_form_upload_drops_readme_and_takes_base_names(store, adapters):
    lora = adapters["lora"]
    staged = store.stage_files({f"folder/{CONFIG}": lora[CONFIG], WEIGHTS: lora[WEIGHTS], "README.md": b"# card"})
    assert sorted(p.name for p in staged.directory.iterdir()) == [CONFIG, WEIGHTS]
    store.put("carded", staged, inspect_adapter)
    assert sorted(p.name for p in store.files("carded").iterdir()) == [CONFIG, WEIGHTS]


def test_stage_directory_copies_only_adapter_files(store, adapters, tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    for name, data in adapters["lora"].items():
        (folder / name).write_bytes(data)
    (folder / "training_args.bin").write_bytes(b"\x80\x04not really a pickle")
    record = store.put("demo", store.stage_directory(folder), inspect_adapter).record
    assert record.version == 1
    assert (folder / "training_args.bin").exists()  # the source folder is left alone
    assert sorted(p.name for p in store.files("demo").iterdir()) == [CONFIG, WEIGHTS]


# ---------------------------------------------------------------------------------------------
# Refusals: each one a typed error, and the store exactly as it was


def _broken_weights(files):
    return {**files, WEIGHTS: b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"}


def _truncated_weights(files):
    return {**files, WEIGHTS: files[WEIGHTS][:-4]}


def _empty_weights(files):
    return {**files, WEIGHTS: save_tensors({})}


REFUSALS = {
    # name: (how to fail, error class, status, code)
    "pickle-in-form": (
        lambda s, f: s.stage_files({CONFIG: f[CONFIG], "adapter_model.bin": b"\x80\x04."}),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-next-to-safetensors": (
        lambda s, f: s.stage_files({**f, "optimizer.PT": b"\x80\x04."}),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-in-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), ("x/adapter_model.bin", b"\x80")])),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-in-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), ("training_args.pkl", b"\x80")])),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "dotdot-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (f"../{WEIGHTS}", f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "dotdot-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([(f"a/../../{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "absolute-zip": (
        lambda s, f: s.stage_archive(make_zip([(zipfile.ZipInfo(f"/tmp/{CONFIG}"), f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "absolute-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([(f"/tmp/{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "windows-absolute-zip": (
        lambda s, f: s.stage_archive(make_zip([(f"C:\\x\\{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "symlink-tar": (
        lambda s, f: s.stage_archive(
            make_tar_gz([*f.items(), (tar_info("README.md", tarfile.SYMTYPE, "/etc/passwd"), b"")])
        ),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "hardlink-tar": (
        lambda s, f: s.stage_archive(
            make_tar_gz([(WEIGHTS, f[WEIGHTS]), (tar_info(CONFIG, tarfile.LNKTYPE, "/etc/passwd"), b"")])
        ),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "device-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), (tar_info("README.md", tarfile.CHRTYPE), b"")])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "symlink-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (zip_symlink(WEIGHTS), b"/etc/passwd")])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-many-members-zip": (
        lambda s, f: s.stage_archive(make_zip([*f.items(), *[(f"README{i}.md", b"") for i in range(7)]])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-many-members-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), *[(f"d{i}", b"") for i in range(7)]])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-large-form": (
        lambda s, f: s.stage_files({**f, WEIGHTS: f[WEIGHTS] + b"\0" * LIMIT}),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "zip-bomb": (  # compresses to a few KiB, unpacks past the limit
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (WEIGHTS, b"\0" * (LIMIT + 1))])),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "tar-bomb": (
        lambda s, f: s.stage_archive(make_tar_gz([(CONFIG, f[CONFIG]), (WEIGHTS, b"\0" * (LIMIT + 1))])),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "too-large-body": (
        lambda s, f: s.stage_archive(NonSeekable(b"PK\x03\x04" + bytes(2 * LIMIT))),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "missing-weights": (
        lambda s, f: s.stage_files({CONFIG: f[CONFIG]}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "missing-config-in-archive": (
        lambda s, f: s.stage_archive(make_zip([("folder/", b""), (f"folder/{WEIGHTS}", f[WEIGHTS])])),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "unknown-extra-file": (
        lambda s, f: s.stage_files({**f, "tokenizer.json": b"{}"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "two-top-folders": (
        lambda s, f: s.stage_archive(make_zip([(f"a/{CONFIG}", f[CONFIG]), (f"b/{WEIGHTS}", f[WEIGHTS])])),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "config-not-object": (
        lambda s, f: s.stage_files({**f, CONFIG: b"[1, 2]"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "config-not-json": (
        lambda s, f: s.stage_files({**f, CONFIG: b"{nope"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "not-an-archive": (
        lambda s, f: s.stage_archive(b"just some text"),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "corrupt-zip": (
        lambda s, f: s.stage_archive(make_zip(list(f.items()))[:200]),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "corrupt-tar.gz": (
        lambda s, f: s.stage_archive(make_tar_gz(list(f.items()))[:300]),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "broken-safetensors": (
        lambda s, f: s.stage_files(_broken_weights(f)),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "truncated-safetensors": (
        lambda s, f: s.stage_archive(make_tar_gz(list(_truncated_weights(f).items()))),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "empty-safetensors": (
        lambda s, f: s.stage_files(_empty_weights(f)),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "bad-name": (
        lambda s, f: s.put("Bad Name", s.stage_files(f), inspect_adapter),
        errors.InvalidName,
        422,
        "invalid_name",
    ),
    "bad-prompt-template": (
        lambda s, f: s.put("existing", s.stage_files(f), inspect_adapter, prompt_template="{text} and {text}"),
        errors.InvalidRequest,
        422,
        "invalid_request",
    ),
    "inspect-raises-on-create": (
        lambda s, f: s.put("newcomer", s.stage_files(f), _refusing_inspect),
        errors.IncompatibleAdapter,
        422,
        "incompatible_adapter",
    ),
    "inspect-raises-on-replace": (
        lambda s, f: s.put("existing", s.stage_files(f), _refusing_inspect),
        errors.IncompatibleAdapter,
        422,
        "incompatible_adapter",
    ),
}


def _refusing_inspect(staged):
    assert staged.weights.is_file()  # it sees the staged files
    raise errors.IncompatibleAdapter("This adapter was made for another base model.")


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_leave_store_unchanged(store, adapters, case):
    attempt, error_class, status, code = REFUSALS[case]
    store.put("existing", store.stage_files(adapters["lora"]), inspect_adapter)
    before = snapshot(store)

    with pytest.raises(error_class) as caught:
        attempt(store, adapters["ia3"])

    assert type(caught.value) is error_class
    assert caught.value.status == status and caught.value.code == code
    assert caught.value.message
    assert snapshot(store) == before
    assert_staging_empty(store)
    assert store.get("existing").version == 1
    # ...and a restart agrees.
    assert [r.to_dict() for r in AdapterStore(store.root, LIMIT).list()] == before[0]


def test_pickle_refusal_says_how_to_convert(store, adapters):
    with pytest.raises(errors.PickleRefused) as caught:
        store.stage_files({CONFIG: adapters["lora"][CONFIG], "adapter_model.bin": b"\x80"})
    assert "safe_serialization=True" in caught.value.message
    assert WEIGHTS in caught.value.message


def test_put_refuses_folders_not_staged_by_the_store(store, adapters, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    for name, data in adapters["lora"].items():
        (folder / name).write_bytes(data)
    forged = StagedAdapter(directory=folder, config={}, parameters=1, bytes=1)
    with pytest.raises(ValueError):
        store.put("outsider", forged, inspect_adapter)
    assert folder.exists() and not store.exists("outsider")


