"""Our mirror of PEFT's module-selection rules selects exactly the modules PEFT adapts, and bounds every regex."""

from __future__ import annotations

import copy
import time

import pytest
from peft import IA3Config, LoraConfig, get_peft_model
from peft.tuners.ia3.model import IA3Model
from peft.tuners.tuners_utils import (
    BaseTunerLayer,
    _ExcludedModule,
    check_target_module_exists,
)
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)
from peft.utils.other import get_pattern_key

from service.engine.deltas.module_patterns import (
    BoundedPatterns,
    is_feedforward,
    pattern_key,
)
from service.engine.deltas.targets import target_rules
from service.errors import InvalidAdapterConfig

LORA_SELECTIONS = {
    "suffixes": LoraConfig(target_modules=["q_proj", "v_proj"]),
    "default for llama": LoraConfig(),
    "all-linear": LoraConfig(target_modules="all-linear"),
    "regex": LoraConfig(target_modules=r".*\.(q|v)_proj"),
    "regex on one layer": LoraConfig(target_modules=r"model\.layers\.1\..*_proj"),
    "layers_to_transform list": LoraConfig(target_modules=["q_proj", "down_proj"], layers_to_transform=[1]),
    "layers_to_transform int + pattern": LoraConfig(
        target_modules=["k_proj"], layers_to_transform=0, layers_pattern="layers"
    ),
    "layers_pattern list": LoraConfig(
        target_modules=["o_proj"], layers_to_transform=[1], layers_pattern=["blocks", "layers"]
    ),
    "full name skips the layer filter": LoraConfig(
        target_modules=["model.layers.0.self_attn.q_proj", "v_proj"], layers_to_transform=[1]
    ),
    "exclude list": LoraConfig(
        target_modules=["q_proj", "v_proj"], exclude_modules=["model.layers.0.self_attn.q_proj"]
    ),
    "exclude suffix": LoraConfig(target_modules="all-linear", exclude_modules=["down_proj"]),
    "exclude regex": LoraConfig(target_modules=["q_proj", "v_proj", "lm_head"], exclude_modules=r".*layers\.1\..*"),
}

IA3_SELECTIONS = {
    "default for llama": IA3Config(),
    "suffixes": IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "regexes": IA3Config(target_modules=r".*\.(v_proj|up_proj)", feedforward_modules=r".*\.up_proj"),
    "exclude": IA3Config(
        target_modules=["v_proj", "down_proj"],
        feedforward_modules=["down_proj"],
        exclude_modules=["model.layers.1.mlp.down_proj"],
    ),
}


def adapted_by_peft(model, config) -> dict[str, object]:
    """What PEFT itself adapts: module name -> its tuner layer."""
    peft_model = get_peft_model(copy.deepcopy(model), copy.deepcopy(config))
    return {
        name: module
        for name, module in peft_model.base_model.model.named_modules()
        if isinstance(module, BaseTunerLayer)
    }


def targeted_by_us(config, base, defaults) -> set[str]:
    rules = target_rules(config, base, defaults)
    patterns = BoundedPatterns()
    return {name for name in base.module_types if rules.verdict(name, patterns) == "targeted"}


@pytest.mark.parametrize("selection", list(LORA_SELECTIONS))
def test_lora_selection_equals_what_peft_adapts(selection, tiny_model, tiny_base):
    config = LORA_SELECTIONS[selection]
    expected = set(adapted_by_peft(tiny_model, config))
    assert expected, "each selection adapts something"
    assert targeted_by_us(config, tiny_base, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING) == expected


@pytest.mark.parametrize("selection", list(IA3_SELECTIONS))
def test_ia3_selection_and_feedforward_equal_peft(selection, tiny_model, tiny_base):
    config = IA3_SELECTIONS[selection]
    adapted = adapted_by_peft(tiny_model, config)
    assert targeted_by_us(config, tiny_base, TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING) == set(adapted)
    feedforward = config.feedforward_modules or {"down_proj"}  # PEFT's llama default, which it wrote back into a copy
    patterns = BoundedPatterns()
    assert {name for name in adapted if is_feedforward(feedforward, name, patterns)} == {
        name for name, layer in adapted.items() if layer.is_feedforward
    }


# PEFT resolves a null target_modules and "all-linear" before it matches; the test above covers those.
MATCHED_AS_WRITTEN = [
    name for name, config in LORA_SELECTIONS.items() if config.target_modules not in (None, "all-linear")
]


@pytest.mark.parametrize("selection", MATCHED_AS_WRITTEN)
def test_verdicts_equal_check_target_module_exists(selection, tiny_base):
    """Module by module, which are excluded included, against PEFT's own function."""
    config = LORA_SELECTIONS[selection]
    rules = target_rules(config, tiny_base, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
    patterns = BoundedPatterns()
    for name in tiny_base.module_types:
        peft_result = check_target_module_exists(config, name)
        expected = (
            "excluded" if isinstance(peft_result, _ExcludedModule) else "targeted" if peft_result else "unmatched"
        )
        assert rules.verdict(name, patterns) == expected, name


def test_pattern_key_equals_peft(tiny_base):
    keys = ["down_proj", "layers.1.self_attn.q_proj", r"layers\.\d\.mlp\..*", "q_proj", "lm_head", "proj"]
    patterns = BoundedPatterns()
    for name in tiny_base.module_types:
        assert pattern_key(keys, name, patterns, "rank_pattern") == get_pattern_key(keys, name), name


def test_feedforward_rule_equals_peft(tiny_base):
    patterns = BoundedPatterns()
    for feedforward in (["down_proj"], ["proj"], r".*mlp\.(up|down)_proj", r"down_proj"):
        config = IA3Config(target_modules=r".*", feedforward_modules=feedforward)
        for name in tiny_base.module_types:
            expected = IA3Model._check_target_module_feedforward(config, name)
            assert is_feedforward(config.feedforward_modules, name, patterns) == expected, (feedforward, name)


def test_a_catastrophically_backtracking_regex_is_matched_quickly():
    # With `re`, "(.+)+X" against a 30-character name takes about 2**30 steps (minutes, holding the GIL).
    patterns = BoundedPatterns()
    started = time.monotonic()
    assert patterns.fullmatch(r"(.+)+X", "model.layers.10.self_attn.q_proj", "target_modules") is None
    assert patterns.match(r"(.*\.)?((\w|\w)+X)$", "model.layers.10.self_attn.q_proj", "rank_pattern") is None
    assert time.monotonic() - started < 1.0


def test_matching_past_the_budget_is_refused():
    with pytest.raises(InvalidAdapterConfig, match=r"matching 'target_modules'.*took more than"):
        BoundedPatterns(budget_s=0).fullmatch(r".*q_proj", "model.layers.0.self_attn.q_proj", "target_modules")
    # One that even `regex` backtracks on: its own timeout stops it.
    started = time.monotonic()
    with pytest.raises(InvalidAdapterConfig, match=r"matching 'exclude_modules'.*took more than 0\.2 s"):
        BoundedPatterns(budget_s=0.2).fullmatch(r"(x+x+)+y", "x" * 5000, "exclude_modules")
    assert time.monotonic() - started < 2.0


def test_patterns_are_checked_like_peft_would_and_bounded():
    patterns = BoundedPatterns()
    with pytest.raises(InvalidAdapterConfig, match="'exclude_modules' is not a valid regular expression"):
        patterns.fullmatch(r"((", "x", "exclude_modules")
    with pytest.raises(
        InvalidAdapterConfig, match="not a valid regular expression: bad escape"
    ):  # only `regex` knows \p
        patterns.fullmatch(r"\p{L}+", "x", "target_modules")
    started = time.monotonic()
    with pytest.raises(InvalidAdapterConfig, match="repeats too much"):
        patterns.fullmatch(r"(?:a{1000}){1000}", "x", "target_modules")  # `regex` would build a 270 MB program
    with pytest.raises(InvalidAdapterConfig, match="repeats too much"):
        patterns.fullmatch("[{" + "9" * 5000 + "}]", "x", "target_modules")  # re takes it: a character class
    assert time.monotonic() - started < 1.0
