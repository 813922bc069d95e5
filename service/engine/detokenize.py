"""Text of a growing list of tokens, one piece per token, without decoding the whole list each time.

Decoding a token alone can give a broken character (a multi-byte character spread over two byte-level
tokens) or lose a leading space (SentencePiece). So each new token is decoded together with a few tokens
before it, and only text that is complete is released: the same method as TGI's and vLLM's streaming.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

_INCOMPLETE = "\ufffd"  # what decoding half a multi-byte character gives


class IncrementalText:
    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""  # every piece released so far
        self._prefix = 0  # tokens[_prefix:_read] are the context the next piece is decoded after
        self._read = 0

    def _decode(self, tokens: list[int]) -> str:
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        assert isinstance(text, str)  # one sequence in, one string out
        return text

    def add(self, token: int) -> str:
        """Append `token`; return the text it completes ("" while a character is still incomplete)."""
        self.tokens.append(token)
        before = self._decode(self.tokens[self._prefix : self._read])
        after = self._decode(self.tokens[self._prefix :])
        if len(after) <= len(before) or after.endswith(_INCOMPLETE):
            return ""
        piece = after[len(before) :]
        self._prefix, self._read = self._read, len(self.tokens)
        self.text += piece
        return piece

    def full(self) -> str:
        """The whole text decoded at once: what `tokenizer.decode(tokens)` gives a PEFT user."""
        return self._decode(self.tokens)


def find_stop(text: str, piece: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string starts in `text`, which just grew by `piece` and held none before; -1 if none."""
    if not stops or not piece:
        return -1
    # A new occurrence ends inside the new piece, so it starts at most (longest stop - 1) characters before it.
    start = max(0, len(text) - len(piece) - max(map(len, stops)) + 1)
    found = [i for i in (text.find(stop, start) for stop in stops) if i >= 0]
    return min(found, default=-1)
