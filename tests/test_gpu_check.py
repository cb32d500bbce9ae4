"""benchmarks/gpu_check.py keeps working between the rare sessions that have a GPU."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_gpu_check_dry_run_passes_every_check():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| check")]
    names = " ".join(rows)
    for check in ("decode tcs-unfold", "supersample", "sim-recon (network)", "raw network", "emcs decode"):
        assert check in names, proc.stdout
    assert all("| ok |" in r for r in rows), proc.stdout
    assert "all within tolerance" in proc.stdout
    assert "network=" in proc.stdout and "blend=" in proc.stdout  # the end-to-end decode's phases
