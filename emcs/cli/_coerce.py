"""Typer's parameter coercion without loading pydantic for plain values.

Recent typers (0.29 here) convert every command-line value through a pydantic
``TypeAdapter``, built when the value is first processed; importing pydantic
costs about 0.1 s, a third of ``emcs encode``'s start-up. The values of
nearly every command line are plain: a string for a ``str`` option, decimal
digits for an ``int``, a decimal number for a ``float``, a list of those.
:func:`plain_coercion` gives each parameter a coercion that converts such a
value as pydantic does (``int("12")``, ``float("0.5")``) and hands anything
else (another type, ``1_000``, ``1.0`` for an int, ``inf``, a value out of
``min``/``max``, a path) to typer's own coercion, which builds the pydantic
adapter then: its result and its error messages are typer's.
``tests/test_startup.py`` checks the two agree.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

try:  # typer's coercion through pydantic; older typers use click's types, no pydantic
    from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
    from typer._typing import get_args, get_origin
except ImportError:  # pragma: no cover
    RuntimeParam = None

_INT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT = re.compile(r"[+-]?([0-9]{1,18}\.?[0-9]{0,18}|\.[0-9]{1,18})([eE][+-]?[0-9]{1,3})?")
#: a value :func:`_plain_value` leaves to typer
_NOT_PLAIN = object()


def _plain_number(value, kind: type):
    """An int or float (``kind``) from its decimal text or from a number (not a bool)."""
    if isinstance(value, str):
        if not (_INT if kind is int else _FLOAT).fullmatch(value):
            return _NOT_PLAIN
    elif type(value) is not kind and not (kind is float and type(value) is int):
        return _NOT_PLAIN
    number = kind(value)
    return number if math.isfinite(number) else _NOT_PLAIN


def _plain_value(value, annotation, info):
    """``value`` converted as typer would, or :data:`_NOT_PLAIN`."""
    if info.parser is not None:
        return _NOT_PLAIN
    if get_origin(annotation) is list and len(get_args(annotation)) == 1 \
            and isinstance(value, (list, tuple)):
        items = [_plain_value(v, get_args(annotation)[0], info) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if annotation in (str, bool):
        return value if type(value) is annotation else _NOT_PLAIN
    if annotation not in (int, float) or info.clamp:
        return _NOT_PLAIN
    number = _plain_number(value, annotation)
    if number is _NOT_PLAIN or (info.min is not None and number < info.min) \
            or (info.max is not None and number > info.max):
        return _NOT_PLAIN
    return number


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _PlainRuntimeParam(RuntimeParam):
        """Plain values converted here, the others by typer's pydantic coercion."""

        descriptor: TypeDescriptor

        def _coerce_value(self, value, param, ctx):
            plain = _plain_value(value, self.annotation, self.parameter_info)
            if plain is not _NOT_PLAIN:
                return plain
            return self._typer._coerce_value(value, param=param, ctx=ctx)

        @functools.cached_property
        def _typer(self) -> RuntimeParam:
            return build_runtime_param(self.descriptor)


def plain_coercion(params) -> None:
    """Give the typer parameters among ``params`` the coercion of :class:`_PlainRuntimeParam`
    (before typer builds its own; parameters of file types keep typer's)."""
    if RuntimeParam is None:  # pragma: no cover
        return
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or descriptor.file_annotation is not None \
                or getattr(param, "_runtime_param", False) is not None:
            continue
        param._runtime_param = _PlainRuntimeParam(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
            descriptor=descriptor)
