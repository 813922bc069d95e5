"""File names of an adapter folder: PEFT's save format (what `PeftModel.save_pretrained` writes) and AdapterHub's
(`model.save_adapter(dir, name, use_safetensors=True)`), shared by the engine and the store, and our optional
metadata file beside them."""

CONFIG_FILE = "adapter_config.json"  # both formats
WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's, and the name every stored version's weights have
ADAPTERHUB_WEIGHTS_FILE = "adapter.safetensors"  # AdapterHub's, stored as WEIGHTS_FILE
# A folder AdapterHub saved from a model with a head also holds its head (never stored).
HEAD_CONFIG_FILE = "head_config.json"
HEAD_WEIGHTS_FILE = "model_head.safetensors"
# Optional, ours: {"prompt_template": ..., "description": ...}, read by the demo install and the CLI's upload.
METADATA_FILE = "deltaserve.json"

# Bounds on adapter_config.json, a document from a client (service/json_limits.py). PEFT writes 1-3 KiB, and
# an explicit per-module target_modules / rank_pattern for an 80-layer model is about 100 KiB, so 1 MiB
# leaves ten times that; PEFT's configs nest 3 levels (rank_pattern -> value, layer_replication's pairs),
# so 64 is far above any real one and far below where a recursive parser or PEFT's own code could fail.
CONFIG_MAX_BYTES = 1024 * 1024
CONFIG_MAX_DEPTH = 64
