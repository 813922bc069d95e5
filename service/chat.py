"""From a chat conversation to the one text a row is made from.

Without a prompt template, the tokenizer's own chat template lays out the whole conversation, as the base
model was trained. An adapter with a `prompt_template` was trained on that template around one input, so
its answers stay as good as on /generate only if it gets exactly that: the last user message, through its
template. Earlier turns and system messages are then not part of its input (the README says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from transformers import PreTrainedTokenizerBase

from service.errors import InvalidRequest


class Message(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def text(self) -> str: ...


def last_user_message(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    raise InvalidRequest("the conversation has no user message")


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The conversation through the tokenizer's chat template, ending where the assistant's answer begins.
    The text holds its special tokens already (tokenize it without adding more)."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest("the base model has no chat template; use /v1/completions with a prompt")
    conversation = [{"role": message.role, "content": message.text} for message in messages]
    try:
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # a template may refuse a conversation (e.g. roles out of order)
        raise InvalidRequest(f"the chat template refused the conversation: {exc}") from None
    assert isinstance(prompt, str)  # tokenize=False gives the text
    return prompt
