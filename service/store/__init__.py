"""The on-disk adapter store: validated uploads, versioned adapter folders, pipeline documents."""

from service.store.adapter_store import (
    AdapterStore,
    Inspection,
    Inspector,
    OnPublish,
    PutResult,
    StagedAdapter,
    check_prompt_template,
)
from service.store.names import NAME_RULE, is_valid_name, validate_name
from service.store.pipeline_documents import PipelineDocuments
from service.store.records import AdapterRecord
from service.store.uploads import (
    ADAPTER_FILES,
    CONFIG_FILE,
    MAX_ARCHIVE_MEMBERS,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    StagedSummary,
    check_staged,
    count_parameters,
)
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
