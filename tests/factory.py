"""Test fixtures made from scratch: a tiny random Llama, a small real BPE tokenizer, and PEFT adapters of every
kind created and saved by peft itself (the same files a user uploads)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptEncoderReparameterizationType,
    PromptTuningConfig,
    PromptTuningInit,
    get_peft_model,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

CORPUS = [
    "When was the Beijing Olympic held? It was held in 2008.",
    "Which planet is the largest in the solar system? Jupiter is the largest planet.",
    "Who painted the Mona Lisa? Leonardo da Vinci painted it.",
    "What is the capital of France? Paris is the capital of France.",
    "How many players are on a football team? Eleven players are on the field.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
] * 4

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left"
    )


def tiny_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, like SmolLM2 and Llama 3
        max_position_embeddings=256,
        initializer_range=0.2,  # peaked logits: greedy choices are not near-ties
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def build_tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(vocab_size)).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    return model


# Every delta kind and variant the engine claims, as PEFT configs. TEXT init needs the tokenizer's directory.
def adapter_configs(tokenizer_dir: str) -> dict[str, PeftConfig]:
    return {
        "lora": LoraConfig(
            task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
        "lora_patterns": LoraConfig(
            task_type="CAUSAL_LM",
            r=4,
            lora_alpha=16,
            use_rslora=True,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            rank_pattern={"down_proj": 8, "layers.1.self_attn.q_proj": 2},
            alpha_pattern={"o_proj": 4},
            init_lora_weights=False,
        ),
        "ia3": IA3Config(
            task_type="CAUSAL_LM",
            target_modules=["k_proj", "v_proj", "down_proj"],
            feedforward_modules=["down_proj"],
            init_ia3_weights=False,
        ),
        "prompt_tuning": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
        "prompt_tuning_text": PromptTuningConfig(
            task_type="CAUSAL_LM",
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text="Answer the question about the planet:",
            num_virtual_tokens=6,
            tokenizer_name_or_path=tokenizer_dir,
        ),
        "p_tuning_mlp": PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=32),
        "p_tuning_lstm": PromptEncoderConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=3,
            encoder_hidden_size=32,
            encoder_reparameterization_type=PromptEncoderReparameterizationType.LSTM,
        ),
        "prefix_tuning": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        "prefix_projection": PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=32
        ),
    }


def _randomize_ia3(peft_model: PeftModel) -> None:
    # init_ia3_weights=False leaves ones... make the vectors clearly non-trivial.
    for name, parameter in peft_model.named_parameters():
        if "ia3_l" in name:
            with torch.no_grad():
                parameter.uniform_(0.2, 2.0)


# The test adapters' soft prompts and prefixes get the spread of PEFT's random-init prompt, N(0, 1). TEXT init
# copies word embeddings (std ~0.2 in the tiny model) and the P-tuning encoders and the prefix projection start
# near std 0.1-0.3, so those adapters barely moved the logits, and the tests missed a 1% error in them.
# Rescaling the layer that makes the output is what training might do to the weights; PEFT still saves and
# loads the adapter as its own.
SOFT_PROMPT_STD = 1.0


def _output_layer(peft_model: PeftModel, config: PeftConfig) -> torch.nn.Module:
    """The module whose parameters the saved prompt embeddings are proportional to."""
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    if isinstance(config, PromptEncoderConfig):
        return encoder.mlp_head[-1]  # MLP and LSTM encoders both end in a Linear
    if isinstance(config, PrefixTuningConfig) and config.prefix_projection:
        return encoder.transform[-1]
    return encoder.embedding


def _rescale_soft_prompt(peft_model: PeftModel, config: PeftConfig, std: float) -> None:
    saved = peft_model.get_prompt_embedding_to_save(peft_model.active_adapter)
    factor = std / float(saved.std())
    with torch.no_grad():
        for parameter in _output_layer(peft_model, config).parameters():
            parameter.mul_(factor)


def save_adapter(base_model: PreTrainedModel, config: PeftConfig, directory: Path, seed: int = 1,
                 soft_prompt_std: float | None = None) -> Path:
    """Create the adapter with peft on a copy of `base_model` and save it as PEFT does. `soft_prompt_std`: give
    a prompt-learning adapter's saved prompt (or prefix) this standard deviation (see SOFT_PROMPT_STD)."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(copy.deepcopy(base_model), copy.deepcopy(config))
    if isinstance(config, IA3Config):
        _randomize_ia3(peft_model)
    if soft_prompt_std is not None and config.is_prompt_learning:
        _rescale_soft_prompt(peft_model, config, soft_prompt_std)
    peft_model.save_pretrained(str(directory))
    return directory
