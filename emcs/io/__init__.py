"""Shared I/O layer: lazy reading and safe writing of image stacks.

>>> from emcs.io import open_stack, write_stack, StackWriter, atomic_output
"""

from emcs.io.stack import SUPPORTED_DTYPES, Stack, open_stack, read_stack
from emcs.io.write import WRITE_SUFFIXES, StackWriter, atomic_output, check_output, write_stack

__all__ = [
    "SUPPORTED_DTYPES",
    "WRITE_SUFFIXES",
    "Stack",
    "StackWriter",
    "atomic_output",
    "check_output",
    "open_stack",
    "read_stack",
    "write_stack",
]
