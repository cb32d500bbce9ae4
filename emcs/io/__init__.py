"""Shared I/O layer: lazy reading and safe writing of image stacks.

Pixel sizes are in ångström per pixel everywhere (:data:`PIXEL_SIZE_UNIT`).

>>> from emcs.io import open_stack, write_stack, StackWriter, atomic_output
"""

from emcs.io.partial import clean_stale_partials
from emcs.io.readers import READ_SUFFIXES, open_stack, read_stack
from emcs.io.sequence import SEQUENCE_SUFFIXES, is_pattern
from emcs.io.stack import PIXEL_SIZE_UNIT, SUPPORTED_DTYPES, Stack, to_angstrom
from emcs.io.stats import stack_stats
from emcs.io.stdio import STDIO
from emcs.io.write import (
    WRITE_SUFFIXES,
    StackWriter,
    atomic_output,
    check_output,
    check_suffix,
    write_stack,
)

__all__ = [
    "PIXEL_SIZE_UNIT",
    "READ_SUFFIXES",
    "SEQUENCE_SUFFIXES",
    "STDIO",
    "SUPPORTED_DTYPES",
    "WRITE_SUFFIXES",
    "Stack",
    "StackWriter",
    "atomic_output",
    "check_output",
    "check_suffix",
    "clean_stale_partials",
    "is_pattern",
    "open_stack",
    "read_stack",
    "stack_stats",
    "to_angstrom",
    "write_stack",
]
