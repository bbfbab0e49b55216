"""The API's JSON parser: DRF's, refusing with a 400 what would fail later as a 500 (`loads`, which the
admin's JSON form field uses too: `beacon.forms`).

A body nested deeper than `MAX_JSON_DEPTH` (100,000 levels raised RecursionError in the parser), a
number beyond what a float or a 64-bit integer holds (`1e400` is infinity, and PostgreSQL refuses it),
and a string holding NUL or a lone surrogate (`beacon.storable`) are parse errors, with the place
named: `{"detail": "JSON parse error - ...", "code": "parse_error"}`.
"""
import codecs
import json
import math

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from beacon.storable import UNSTORABLE_MESSAGE, is_storable

# Far deeper than any Beacon input (profile attributes are a flat object) and far from the interpreter's
# recursion limit, which the serializers and the database adapter walk within.
MAX_JSON_DEPTH = 32
INTEGER_LIMIT = 2**63


def _too_large(text: str) -> ValueError:
    return ValueError(f"the number {text if len(text) <= 40 else text[:40] + '…'} is too large")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _too_large(text)
    return value


def _bounded_int(text: str) -> int:
    # Python refuses to convert more than 4,300 digits: a ValueError too, reported as it says.
    value = int(text)
    if not -INTEGER_LIMIT <= value < INTEGER_LIMIT:
        raise _too_large(text)
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _place(path: list) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".") or "the body"


def json_problem(data) -> str | None:
    """What makes parsed JSON unacceptable (too deep, an unstorable string), with where; None if nothing.

    Iterative, so that depth itself cannot exhaust the stack."""
    stack = [(data, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, str):
            if not is_storable(value):
                return f"the value at {_place(path)} {UNSTORABLE_MESSAGE}"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not is_storable(key):
                    return f"a key in {_place(path)} {UNSTORABLE_MESSAGE}"
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
    return None


def loads(text: str):
    """JSON text as Python values, by the rules above; a ValueError saying what is wrong, and where."""
    try:
        data = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    problem = json_problem(data)
    if problem:
        raise ValueError(problem)
    return data


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(codecs.getreader(encoding)(stream).read())
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
