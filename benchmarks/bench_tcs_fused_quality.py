"""``bench_tcs_int8_quality.py`` for the fused bfloat16 denoisers (issue 17, session 18).

    EMCS_FUSE=1 python benchmarks/bench_tcs_fused_quality.py SIZE float32,bfloat16 [KIND,KIND...]

The same movies and output as ``bench_tcs_int8_quality.py``, but ``emcs.tcs.nets.api``'s model cache
keeps every model: that script alternates float32 and bfloat16 per movie, which would rebuild the
bfloat16 copy each time and never reach a shape's fused graphs (built on its second call,
``emcs.tcs.nets.bf16.FUSE_AFTER``). So the first movie of a run decodes eagerly, the second builds
the graphs, the rest run fused. Prints the shapes whose graphs were built, and whether right, to stderr.
"""
import runpy
import sys
from pathlib import Path

import emcs.tcs.nets.api as api
import emcs.tcs.nets.bf16 as b


class Keep(dict):
    def clear(self):
        pass


api._CACHE = Keep()
orig = b.BF16Denoiser._fuse
built = []


def fuse(self, key, z, n, eager):
    orig(self, key, z, n, eager)
    built.append((key, self._fused.get(key) is not None))


b.BF16Denoiser._fuse = fuse
sys.argv = ["bench_tcs_int8_quality.py"] + sys.argv[1:]
try:
    runpy.run_path(str(Path(__file__).with_name("bench_tcs_int8_quality.py")), run_name="__main__")
finally:
    print("fused builds:", built, file=sys.stderr)
