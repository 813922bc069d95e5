"""Issue #14 stage 0: a T5-family base is detected from its config and refused at start-up."""

import pytest
from transformers import T5Config

from service.config import Settings
from service.engine.base_model import load_base_model


@pytest.mark.parametrize("model_type", ["t5", "mt5", "umt5"])
def test_t5_family_base_is_refused_at_load(tmp_path, model_type):
    config = T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=100)
    config.model_type = model_type
    config.save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"model_type": "t5"', f'"model_type": "{model_type}"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=f"encoder-decoder model \\(model_type '{model_type}'\\)"):
        load_base_model(Settings(base_model=str(tmp_path), device="cpu"))
