"""File names of PEFT's save format (what `PeftModel.save_pretrained` writes), shared by the engine and the store."""

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
