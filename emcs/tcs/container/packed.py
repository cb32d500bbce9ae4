"""The measurements of a packed container, decoded on access (:class:`PackedMeasurements`)."""

from __future__ import annotations

import contextlib
import zipfile

import numpy as np

from emcs.errors import EmcsError
from emcs.tcs.container.codecs import anscombe_values, decode_measurement
from emcs.tcs.container.members import DAMAGE
from emcs.tcs.container.schema import member_choices


class PackedMeasurements:
    """The (N, H, W) measurements of a packed container, decoded on access.

    Indexing with an integer or a slice (step 1) reads and decodes just those
    members; ``np.asarray`` decodes all of them. Picklable (a copy opens the
    archive per access), so a Dask task can carry it. With an Anscombe
    ``step`` the members hold quantization codes (``stored_dtype``) and the
    measurements come back as float32 counts (:func:`~emcs.tcs.container.codecs.anscombe_values`).
    The ``mask-predictive`` codec needs the masks' ``operator``
    (:class:`emcs.tcs.operator.TcsOperator`) and the frames per group, ``counts``.
    """

    def __init__(self, path: str, codec: str, dtype: np.dtype, shape: tuple[int, int, int],
                 step: float | None = None, operator=None, counts: np.ndarray | None = None):
        self.path, self.codec, self.step = path, codec, step
        self.stored_dtype = np.dtype(dtype)
        self.dtype = np.dtype(np.float32) if step else self.stored_dtype
        self.shape = tuple(int(v) for v in shape)
        self.ndim = 3
        self.operator, self.counts = operator, counts
        self._zf: zipfile.ZipFile | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zf": None}  # an open archive does not travel

    def open(self) -> None:
        """Keep the archive open for the following reads (until :meth:`close`)."""
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.path)

    def close(self) -> None:
        """Close the archive :meth:`open` opened."""
        if self._zf is not None:
            self._zf.close()
            self._zf = None

    @contextlib.contextmanager
    def _archive(self):
        if self._zf is not None:
            yield self._zf
        else:
            with zipfile.ZipFile(self.path) as zf:
                yield zf

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def values(self, stored: np.ndarray) -> np.ndarray:
        """The measurements of stored members (counts for quantization codes)."""
        return anscombe_values(stored, self.step) if self.step else stored

    def _read_stored(self, zf: zipfile.ZipFile, k: int) -> np.ndarray:
        choices = member_choices(k, self.codec)
        name, codec = next(((n, c) for n, c in choices if n in zf.NameToInfo), choices[0])
        try:
            S = self.operator.open_count(int(self.counts[k])) if codec == "mask-predictive" else None
            return decode_measurement(zf.read(name), codec, self.stored_dtype, self.shape[1:], S, self.step)
        except KeyError as exc:
            raise EmcsError(f"member {name} is missing", self.path) from exc
        except (ValueError, *DAMAGE) as exc:
            raise EmcsError(f"checksum mismatch: member {name} is corrupt ({exc})", self.path) from exc

    def block(self, start: int, stop: int, stored: bool = False) -> np.ndarray:
        """Measurements ``start:stop`` (0 <= start <= stop <= N), or their ``stored`` members."""
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.stored_dtype if stored else self.dtype)
        with self._archive() as zf:
            for i, k in enumerate(range(start, stop)):
                codes = self._read_stored(zf, k)
                out[i] = codes if stored else self.values(codes)
        return out

    def __getitem__(self, key):
        N = self.shape[0]
        if isinstance(key, (int, np.integer)):
            k = int(key) + (N if key < 0 else 0)
            if not 0 <= k < N:
                raise IndexError(key)
            return self.block(k, k + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(N)
            if step != 1:
                raise IndexError("packed measurements support slices with step 1 only")
            return self.block(start, max(start, stop))
        raise IndexError(f"unsupported index {key!r}")

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def __iter__(self):
        with self._archive() as zf:  # one open archive for the whole pass
            for k in range(self.shape[0]):
                yield self.values(self._read_stored(zf, k))
