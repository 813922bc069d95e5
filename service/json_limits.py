"""Parse a JSON document from a client within a size limit and a nesting-depth limit.

Python's json parser recurses once per nested array or object, so a document nested 100,000 levels deep
raises RecursionError (a 500), and code that walks the parsed value later (PEFT's config handling,
copy.deepcopy, json.dumps) recurses as deep again. `parse_json` measures the depth first, in one linear
pass over the text that never recurses, and parses only documents within both limits.

Every refusal is an InvalidJson (400) or JsonTooLarge (413), so a caller that lets it through still answers
a 4xx; callers that want their own wording or code catch InvalidJson and re-raise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NoReturn

from service.errors import InvalidJson, JsonTooDeep, JsonTooLarge

# The only characters that matter for nesting: quotes and backslashes (to know what is inside a string)
# and brackets. Everything between them is skipped by the regex engine in one scan.
_SPECIAL = re.compile(r'["\\\[\]{}]')


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when some array or object in `text` is nested more than `max_depth` levels deep.

    One pass over the special characters, each looked at once, no recursion. Exact for valid JSON; on
    malformed text it may count wrongly, which the parser that runs next refuses anyway.
    """
    depth = 0
    in_string = False
    escaped_at = -1  # the position a backslash inside a string escapes
    for match in _SPECIAL.finditer(text):
        position = match.start()
        char = text[position]
        if position == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def parse_json(data: bytes, *, max_bytes: int, max_depth: int, what: str = "the JSON document") -> Any:
    """Parse UTF-8 JSON `data` no longer than `max_bytes` and nested at most `max_depth` levels.

    NaN, Infinity and -Infinity are refused: they are not JSON (RFC 8259), only a Python extension.
    `what` names the document in error messages, e.g. "adapter_config.json".
    """
    if len(data) > max_bytes:
        raise JsonTooLarge(f"{what} is larger than the limit of {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"{what} is not UTF-8 text: {exc}") from None
    if json_depth_exceeds(text, max_depth):
        raise JsonTooDeep(f"{what} nests arrays or objects more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # not reached within the depth limit; kept so no limit can turn into a 500
        raise JsonTooDeep(f"{what} nests arrays or objects too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, the non-finite constants refused above, and the int parser's digit limit
        # (a 5,000-digit number) are all ValueErrors.
        raise InvalidJson(f"{what} is not valid JSON: {str(exc).rstrip('. ')}") from None


def read_json_file(path: Path, *, max_bytes: int, max_depth: int, what: str | None = None) -> Any:
    """`parse_json` over a file, reading at most one byte past `max_bytes` (OSError if it cannot be read)."""
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    return parse_json(data, max_bytes=max_bytes, max_depth=max_depth, what=what or Path(path).name)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")
