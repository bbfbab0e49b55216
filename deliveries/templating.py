"""The template engines of delivery content, and the limit on what one render may produce.

Content is written by marketers in the Django template language, and a short template can ask for a
huge output: `{{ "x"|center:"100000000" }}` is 100 MB, a loop multiplies its body, a `{% with %}` chain
that adds a string to itself doubles it each time. A render here never makes more than
`settings.BEACON_MAX_RENDERED_CHARACTERS`, and says so (`RenderTooLarge`) instead of using the memory:

- the templates are compiled (`limited_template`) with every node counted: what each node outputs, plus
  one per node rendered and ten per turn of a loop (so the time of a render is bounded too, an empty
  loop's included), against one budget per render (`render_budget`; a message's subject, HTML and text
  share one);
- the engines' filters are the default ones, each measured as it returns, and those that take a size
  (`center`, `ljust`, `rjust`, `stringformat`, `floatformat`, `join`) and the `lorem` tag refuse a size
  past the limit before they allocate it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.template import Engine, Library, Template, defaultfilters, defaulttags
from django.template.base import Node, NodeList
from django.template.defaulttags import (
    AutoEscapeControlNode,
    ForNode,
    IfChangedNode,
    IfNode,
    LoremNode,
    SpacelessNode,
    WithNode,
)

# Nodes whose output is their children's, already counted: each render of one counts as one.
_CONTAINER_NODES = (AutoEscapeControlNode, ForNode, IfChangedNode, IfNode, SpacelessNode, WithNode)
# Filters whose argument is a size (a width, a precision, a separator repeated per item).
_SIZED_FILTERS = ("center", "ljust", "rjust", "stringformat", "floatformat")
_NUMBER_RE = re.compile(r"\d+")
# What one turn of a loop counts, in characters: a turn costs about as much time as writing that many.
_LOOP_TURN = 10
# Upper bounds of what `{% lorem %}` makes per word and per paragraph, in characters.
_LOREM_WORD = 20
_LOREM_PARAGRAPH = 2000


class RenderTooLarge(Exception):
    """The render would make more than the limit allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The rendered message would be longer than {limit:,} characters (BEACON_MAX_RENDERED_CHARACTERS): "
            "check the template's filters and loops."
        )


def _limit() -> int:
    return settings.BEACON_MAX_RENDERED_CHARACTERS


class _Budget:
    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def charge(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise RenderTooLarge(self.limit)


_budget: ContextVar[_Budget | None] = ContextVar("beacon_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """One budget for everything rendered inside; nested, the outer one counts."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_Budget(_limit()))
    try:
        yield
    finally:
        _budget.reset(token)


def _charge(amount: int) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.charge(amount)


class _CountedSequence:
    """A loop's sequence, counted by its length before the loop turns."""

    def __init__(self, sequence) -> None:
        self.sequence = sequence

    def resolve(self, context, ignore_failures: bool = False):
        values = self.sequence.resolve(context, ignore_failures=ignore_failures)
        _charge(_LOOP_TURN * len(values) if hasattr(values, "__len__") else 0)
        return values


def _counted(node: Node) -> None:
    if isinstance(node, ForNode):
        node.sequence = _CountedSequence(node.sequence)
    render = node.render_annotated
    if isinstance(node, _CONTAINER_NODES):
        def render_counted(context):
            _charge(1)
            return render(context)
    else:
        def render_counted(context):
            output = render(context)
            _charge(len(output) + 1)
            return output
    # An instance attribute: every caller (NodeList, the loop, the if) renders a node through it.
    node.render_annotated = render_counted


def _count_nodes(nodelist: NodeList) -> None:
    seen: set[int] = set()
    pending = [nodelist]
    while pending:
        for node in pending.pop():
            if id(node) in seen:
                continue
            seen.add(id(node))
            _counted(node)
            pending.extend(
                child for name in node.child_nodelists if (child := getattr(node, name, None)) is not None
            )
            if isinstance(node, IfNode):
                pending.extend(branch for _, branch in node.conditions_nodelists)


class LimitedTemplate(Template):
    """A template of delivery content: its render counts against the render budget."""

    def __init__(self, source: str, engine: Engine) -> None:
        super().__init__(source, engine=engine)
        _count_nodes(self.nodelist)

    def render(self, context=None) -> str:
        with render_budget():
            return super().render(context)


def limited_template(engine: Engine, source: str) -> LimitedTemplate:
    return LimitedTemplate(source, engine)


# --- The engines' filters and tags: the default ones, measured ---------------------------------------

register = Library()


def _too_large(value: Any) -> bool:
    return isinstance(value, (str, list, tuple)) and len(value) > _limit()


def _measured(function: Callable) -> Callable:
    @wraps(function)
    def measured(*args, **kwargs):
        result = function(*args, **kwargs)
        if _too_large(result):
            raise RenderTooLarge(_limit())
        return result

    return measured


def _size_checked(function: Callable) -> Callable:
    @wraps(function)
    def checked(value, *args, **kwargs):
        limit = _limit()
        for number in _NUMBER_RE.findall(str(args[0]) if args else ""):
            if len(number) > len(str(limit)) or int(number) > limit:
                raise RenderTooLarge(limit)
        return function(value, *args, **kwargs)

    return checked


def _join_checked(function: Callable) -> Callable:
    @wraps(function)
    def checked(value, arg, *args, **kwargs):
        if hasattr(value, "__len__") and len(value) * len(str(arg)) > _limit():
            raise RenderTooLarge(_limit())
        return function(value, arg, *args, **kwargs)

    return checked


for _name, _function in defaultfilters.register.filters.items():
    if _name in _SIZED_FILTERS:
        _function = _size_checked(_function)
    elif _name == "join":
        _function = _join_checked(_function)
    register.filter(_name, _measured(_function))


class _LimitedLoremNode(LoremNode):
    def render(self, context) -> str:
        try:
            count = int(self.count.resolve(context))
        except (ValueError, TypeError):
            count = 1
        if count * (_LOREM_WORD if self.method == "w" else _LOREM_PARAGRAPH) > _limit():
            raise RenderTooLarge(_limit())
        return super().render(context)


@register.tag
def lorem(parser, token) -> LoremNode:
    node = defaulttags.lorem(parser, token)
    node.__class__ = _LimitedLoremNode
    return node


def content_engine(*, autoescape: bool) -> Engine:
    """An engine for delivery content: no loader, no library to load, the filters above."""
    return Engine(autoescape=autoescape, debug=False, builtins=["deliveries.templating"])
