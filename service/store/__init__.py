"""The on-disk adapter store: validated uploads, versioned adapter folders, pipeline documents."""

from service.peft_format import CONFIG_FILE, WEIGHTS_FILE
from service.store.adapter_store import (
    AdapterStore,
    Inspection,
    Inspector,
    OnPublish,
    PutResult,
    StagedAdapter,
    check_prompt_template,
)
from service.store.archives import MAX_ARCHIVE_MEMBERS
from service.store.file_set import ADAPTER_FILES, PICKLE_SUFFIXES
from service.store.names import NAME_RULE, is_valid_name, validate_name
from service.store.pipeline_documents import PipelineDocuments
from service.store.records import AdapterRecord
from service.store.uploads import StagedSummary, check_staged, count_parameters
from service.store.versions import LocalVersionStorage, VersionStorage

__all__ = [
    "ADAPTER_FILES",
    "CONFIG_FILE",
    "MAX_ARCHIVE_MEMBERS",
    "NAME_RULE",
    "PICKLE_SUFFIXES",
    "WEIGHTS_FILE",
    "AdapterRecord",
    "AdapterStore",
    "Inspection",
    "Inspector",
    "LocalVersionStorage",
    "OnPublish",
    "PipelineDocuments",
    "PutResult",
    "StagedAdapter",
    "StagedSummary",
    "VersionStorage",
    "check_prompt_template",
    "check_staged",
    "count_parameters",
    "is_valid_name",
    "validate_name",
]
