"""File names of an adapter folder: PEFT's save format (what `PeftModel.save_pretrained` writes), shared by the
engine and the store, and our optional metadata file beside it."""

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# Optional, ours: {"prompt_template": ..., "description": ...}, read by the demo install and the CLI's upload.
METADATA_FILE = "deltaserve.json"
