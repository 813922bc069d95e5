"""Realistic typos for the demo adapters' training and evaluation data, and the character error rate.

`corrupt` adds 1-3 typos of the kinds people make (dropped, doubled, swapped and substituted letters, stray
`#@*~%`, split and merged words, a lost capital or question mark); `cer` scores a correction against the
clean text. Pure standard library and deterministic for a given `random.Random`.
"""

from __future__ import annotations

import random
import string

_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_SYMBOLS = "#@*~%"


def _keyboard_neighbours() -> dict[str, str]:
    position = {ch: (r, c) for r, row in enumerate(_KEY_ROWS) for c, ch in enumerate(row)}
    neighbours: dict[str, str] = {}
    for ch, (r, c) in position.items():
        near = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
        neighbours[ch] = "".join(_KEY_ROWS[rr][cc] for rr, cc in near
                                 if 0 <= rr < len(_KEY_ROWS) and 0 <= cc < len(_KEY_ROWS[rr]))
    return neighbours


_NEIGHBOURS = _keyboard_neighbours()


def _editable(token: str) -> bool:
    """Words that may get letter edits: 3+ letters, no digits, not an acronym such as CPU or NaCl."""
    letters = [ch for ch in token if ch.isalpha()]
    if len(letters) < 3 or any(ch.isdigit() for ch in token):
        return False
    return sum(ch.isupper() for ch in letters) <= 1


def _letter_positions(token: str) -> list[int]:
    return [i for i, ch in enumerate(token) if ch.isalpha()]


def _inner(positions: list[int], rng: random.Random) -> int:
    """A letter position, usually not the word's first letter (people rarely mistype that one)."""
    if len(positions) > 1 and rng.random() < 0.85:
        return rng.choice(positions[1:])
    return rng.choice(positions)


def _same_case(letter: str, like: str) -> str:
    return letter.upper() if like.isupper() else letter


def _edit_word(token: str, op: str, rng: random.Random) -> str | None:
    pos = _letter_positions(token)
    if op == "drop":
        i = _inner(pos, rng)
        return token[:i] + token[i + 1:]
    if op == "double":
        i = _inner(pos, rng)
        return token[:i + 1] + token[i].lower() + token[i + 1:]
    if op == "swap":
        pairs = [i for i in pos[1:] if i + 1 < len(token) and token[i + 1].isalpha()
                 and token[i].lower() != token[i + 1].lower()]
        if not pairs:
            return None
        i = rng.choice(pairs)
        return token[:i] + token[i + 1] + token[i] + token[i + 2:]
    if op == "substitute":
        i = _inner(pos, rng)
        original = token[i].lower()
        options = _NEIGHBOURS.get(original, "")
        if not options or rng.random() < 0.15:
            options = string.ascii_lowercase.replace(original, "")
        return token[:i] + _same_case(rng.choice(options), token[i]) + token[i + 1:]
    if op == "symbol":
        symbol = rng.choice(_SYMBOLS)
        if rng.random() < 0.6:
            i = rng.choice(pos[1:])  # inside the word
        else:
            i = pos[-1] + 1  # right after the word, before any punctuation
        return token[:i] + symbol + token[i:]
    if op == "split":
        runs = [i for i in pos[2:-1] if token[i - 1].isalpha() and token[i - 2].isalpha()
                and token[i].isalpha() and i + 1 < len(token) and token[i + 1].isalpha()]
        if not runs:
            return None
        i = rng.choice(runs)
        return token[:i] + " " + token[i:]
    if op == "case":
        if not token[0].isupper():
            return None
        return token[0].lower() + token[1:]
    raise ValueError(op)


_WORD_OPS = {"drop": 3.0, "double": 2.0, "swap": 3.0, "substitute": 3.0, "symbol": 1.2, "split": 1.0, "case": 0.8}
_TEXT_OPS = {"merge": 1.0, "space_before_mark": 0.4, "drop_mark": 0.1}
_OPS = list(_WORD_OPS) + list(_TEXT_OPS)
_WEIGHTS = list(_WORD_OPS.values()) + list(_TEXT_OPS.values())


def _apply(text: str, op: str, rng: random.Random) -> str | None:
    tokens = text.split(" ")
    if op in _WORD_OPS:
        candidates = [i for i, token in enumerate(tokens) if _editable(token)]
        if not candidates:
            return None
        i = rng.choice(candidates)
        edited = _edit_word(tokens[i], op, rng)
        if edited is None:
            return None
        tokens[i] = edited
        return " ".join(tokens)
    if op == "merge":
        pairs = [i for i in range(len(tokens) - 1) if tokens[i] and tokens[i + 1] and tokens[i + 1][0].isalnum()]
        if not pairs:
            return None
        i = rng.choice(pairs)
        return " ".join([*tokens[:i], tokens[i] + tokens[i + 1], *tokens[i + 2:]])
    if op == "space_before_mark":
        if len(text) < 2 or text[-1] not in "?." or text[-2] == " ":
            return None
        return text[:-1] + " " + text[-1]
    if op == "drop_mark":
        if not text or text[-1] not in "?.":
            return None
        return text[:-1].rstrip()
    raise ValueError(op)


def corrupt(text: str, rng: random.Random, edits: int | None = None) -> str:
    """`text` with 1-3 realistic typos (`edits` of them, or a random number); never returns `text` itself.

    Numbers, acronyms and short words are left alone; the final question mark almost always stays.
    """
    if edits is None:
        edits = rng.choices((1, 2, 3), weights=(0.45, 0.35, 0.2))[0]
    if edits < 1:
        raise ValueError("edits must be at least 1")
    current, done = text, 0
    for _ in range(20 * edits):
        if done >= edits:
            break
        candidate = _apply(current, rng.choices(_OPS, weights=_WEIGHTS)[0], rng)
        if candidate is not None and candidate != current:
            current, done = candidate, done + 1
    if current == text:  # edits that undid each other, or nothing editable: add a stray symbol
        current = text[:-1] + rng.choice(_SYMBOLS) + text[-1:] if text else rng.choice(_SYMBOLS)
    return current


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: Levenshtein distance / max(1, len(reference))."""
    previous = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        current = [i] + [0] * len(reference)
        for j, r in enumerate(reference, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r))
        previous = current
    return previous[-1] / max(1, len(reference))
