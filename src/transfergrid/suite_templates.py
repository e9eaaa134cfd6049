"""How a suite's `fields` read one dataset row: format strings, or Jinja templates as lm-eval's task files.

A field template is either a Python format string (`"{activity_label}: {ctx_a} {ctx_b!c}"`: dotted
field paths, `!c` for `str.capitalize()`) or, when it contains `{{` or `{%`, a Jinja template, like
lm-eval's `doc_to_text` / `doc_to_choice` / `doc_to_target`. A Jinja template sees every field of
the row by name, plus:

- `doc`: the whole row (for a field whose name is not an identifier or is shadowed by the names below);
- `language`: the cell's language code;
- `vars`: the benchmark's `template_vars` of that language (per-language value maps, e.g. connectors);
- the filters `lower_first`, `upper_first` and `regex_replace(pattern, replacement)` on top of Jinja's own
  (`lower`, `trim`, `replace`, ...); Python string methods and slicing work too (`premise.strip()[:-1]`).

Templates run in Jinja's sandbox with undefined names as errors, so a typo fails loudly.
"""

from __future__ import annotations

import ast
import functools
import re
import string
from typing import Any

JINJA_MARKS = ("{{", "{%")


class TemplateError(ValueError):
    """A field template that does not parse or does not render on a row (the message says why)."""


def is_jinja(template: Any) -> bool:
    """Whether `template` is a Jinja template (contains `{{` or `{%`) rather than a field name or format string."""
    return isinstance(template, str) and any(mark in template for mark in JINJA_MARKS)


def get_field(row: dict, path: str) -> Any:
    """The value at a dotted field path of `row` (`a.b` is `row["a"]["b"]`); KeyError(path) when absent."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


class _RowFormatter(string.Formatter):
    """`str.format` over a dataset row, with dotted field paths and `!c` for Python's `capitalize()`."""

    def get_field(self, field_name, args, kwargs):
        return get_field(kwargs, field_name), field_name

    def convert_field(self, value, conversion):
        return str(value).capitalize() if conversion == "c" else super().convert_field(value, conversion)


def _lower_first(text: str) -> str:
    text = str(text)
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    text = str(text)
    return text[:1].upper() + text[1:]


def _regex_replace(text: str, pattern: str, replacement: str = "", count: int = 0) -> str:
    return re.sub(pattern, replacement, str(text), count=count)


@functools.cache
def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(lower_first=_lower_first, upper_first=_upper_first, regex_replace=_regex_replace)
    return env


@functools.lru_cache(maxsize=256)
def _compiled(template: str):
    import jinja2

    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Jinja template {template!r} does not parse: {exc}") from None


def check(template: Any) -> None:
    """Parse a Jinja template now (a syntax error is a TemplateError before any data loads); others pass."""
    if is_jinja(template):
        _compiled(template)


def render(template: str, row: dict, *, language: str, variables: dict | None = None) -> str:
    """`template` filled from `row`: a Jinja template (see the module docstring) or a format string.

    Raises:
        KeyError: a format string names a field the row lacks.
        TemplateError: a Jinja template fails on this row (an undefined name, a bad index, ...).
    """
    if not is_jinja(template):
        return _RowFormatter().format(template, **row)
    import jinja2

    context = {**row, "doc": row, "language": language, "vars": variables or {}}
    try:
        return _compiled(template).render(context)
    except (jinja2.TemplateError, LookupError, TypeError, ValueError) as exc:
        raise TemplateError(f"Jinja template {template!r} failed: {type(exc).__name__}: {exc}") from None


def render_list(template: str, row: dict, *, language: str, variables: dict | None = None) -> list:
    """A Jinja template that renders a Python list literal (lm-eval's `doc_to_choice: "{{[a, b]}}"`), as a list."""
    text = render(template, row, language=language, variables=variables)
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, (list, tuple)):
        raise TemplateError(f"Jinja template {template!r} must render a list literal such as ['a', 'b'], got {text!r}")
    return list(value)
