"""What the benchmarks record about the machine beside their timings."""

from __future__ import annotations


def steal_jiffies() -> tuple[int, int]:
    """(steal, total) CPU jiffies of all cores so far, from /proc/stat (zeros where there is none).

    Steal time is the share of this virtual machine's cores that the host gave to other
    guests: wall-clock figures taken while it is high are slower than the machine is.
    """
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return 0, 0
    return (values[7] if len(values) > 7 else 0), sum(values)


def steal_since(start: tuple[int, int]) -> float:
    """Fraction of CPU time stolen since ``start`` (a :func:`steal_jiffies` reading)."""
    steal, total = (b - a for a, b in zip(start, steal_jiffies(), strict=True))
    return steal / max(total, 1)
