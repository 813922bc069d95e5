"""DeltaServe: one frozen base model, many PEFT deltas hot-swapped per request."""

__version__ = "0.1.0"
