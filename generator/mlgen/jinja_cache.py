"""Compile each Jinja source once while Copier renders.

Copier 9 compiles a template for every path it renders, and for the answers file's name once
per file it renders (``Worker.answers_relpath`` compiles it on each access: ~400 times for one
service). ``mlgen update`` renders the template two or three times. Most of those compilations
repeat one made before, and compiling is more than half of a render's CPU time (measured: 2.2 s
of CPU per render of this template, 0.8 s with this cache).

A compiled template is a code object that depends only on its source, its name and file name
and the environment's syntax and compiler settings, all of which are in the key: the same
template compiled twice is the same code, so reusing it renders the same bytes. Only string
sources are cached (an already parsed tree is compiled as before).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jinja2

_original: Any = jinja2.Environment.compile
_cache: dict[tuple[Any, ...], Any] = {}
_depth = 0
# A few renders' worth (one service is ~1,000 sources and path names).
MAX_ENTRIES = 20_000


def _settings(env: jinja2.Environment) -> tuple[Any, ...]:
    """What the generated code of a source depends on, beside the source itself."""
    autoescape = env.autoescape if isinstance(env.autoescape, bool) else id(env.autoescape)
    return (
        type(env), env.block_start_string, env.block_end_string, env.variable_start_string,
        env.variable_end_string, env.comment_start_string, env.comment_end_string,
        env.line_statement_prefix, env.line_comment_prefix, env.trim_blocks, env.lstrip_blocks,
        env.newline_sequence, env.keep_trailing_newline, tuple(sorted(env.extensions)),
        env.optimized, env.is_async, autoescape, frozenset(env.filters), frozenset(env.tests),
    )


def _compile(
    self: jinja2.Environment,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> Any:
    if not isinstance(source, str):
        return _original(self, source, name, filename, raw, defer_init)
    key = (_settings(self), source, name, filename, raw, defer_init)
    if key not in _cache:
        _cache[key] = _original(self, source, name, filename, raw, defer_init)
    return _cache[key]


@contextmanager
def compiled_once() -> Iterator[None]:
    """Within this block (nested blocks share it), Jinja compiles a source once. Outside it,
    Jinja is as it was; the compiled code is kept for the next block (a process that renders
    again, e.g. `mlgen update` or a test session), up to ``MAX_ENTRIES``."""
    global _depth
    if _depth == 0:
        if len(_cache) > MAX_ENTRIES:
            _cache.clear()
        jinja2.Environment.compile = _compile  # type: ignore[method-assign]
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            jinja2.Environment.compile = _original  # type: ignore[method-assign]
