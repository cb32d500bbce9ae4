"""``emcs demo``: encode -> decode the shipped example movie and score it.

The demo composes parts of emcs (the TCS encoder and decoders, the metrics of
:mod:`emcs.compare.metrics`), so it lives above the capabilities: only
:mod:`emcs.cli.demo` imports it (``docs/architecture.md``).

The example (``au_movie.tif``, shipped in :mod:`emcs.examples`: a simulated
in-situ HRTEM series of a gold nanoparticle with shot noise, and ``au_movie_truth.tif``: its
clean expected counts) is encoded with B = 10, decoded (a network when one
fits, else GAP-TV), and the reconstruction and the naive estimate
``Y / sum C`` are scored against the clean frames (PSNR with the truth's
max - min as data range, mean SSIM over frames). A side-by-side PNG shows
raw | measurement | reconstruction | clean truth for one frame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emcs.compare.metrics import psnr, ssim
from emcs.errors import EmcsError
from emcs.examples import example_path, examples_dir

DEMO_B = 10
DEMO_SEED = 2021
MOVIE = "au_movie.tif"
TRUTH = "au_movie_truth.tif"


def score(x: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(PSNR over the whole movie, mean per-frame SSIM), data range = truth max - min."""
    x = np.asarray(x, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    rng = float(truth.max() - truth.min()) or 1.0
    return psnr(x, truth, data_range=rng), float(np.mean([ssim(a, b, data_range=rng) for a, b in zip(x, truth, strict=True)]))


def naive_movie(container) -> np.ndarray:
    """The naive estimate Ybar = Y / sum C (paper Eq. 2) for every frame, in input units."""
    op = container.operator
    out = []
    for k in range(container.n_measurements):
        n = int(container.counts[k])
        ybar = op.normalized(np.asarray(container.measurements[k], dtype=np.float64), n)
        out.append(np.repeat(ybar[None], n, axis=0))
    return np.concatenate(out)


def _figure(path: str, raw, meas, rec, truth, frame: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    lo, hi = float(np.percentile(truth, 0.5)), float(np.percentile(truth, 99.5))
    panels = [
        (raw, f"raw frame {frame} (noisy)", (lo, hi)),
        (meas, f"measurement ({DEMO_B} frames -> 1)", None),
        (rec, f"reconstruction, frame {frame}", (lo, hi)),
        (truth, "clean truth", (lo, hi)),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), dpi=110)
    for ax, (img, name, clim) in zip(axes, panels, strict=True):
        kw = {} if clim is None else {"vmin": clim[0], "vmax": clim[1]}
        ax.imshow(img, cmap="gray", **kw)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_demo(
    outdir: str | os.PathLike = "emcs-demo",
    *,
    force: bool = False,
    movie: str | os.PathLike | None = None,
    truth: str | os.PathLike | None = None,
    device: str = "auto",
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Run the demo; returns a summary dict (ratio, PSNR/SSIM, times, file names).

    Parameters
    ----------
    outdir : path
        Folder for ``au_movie.npz``, ``au_movie_rec.tif`` and ``demo.png``
        (created if needed; existing files are kept unless ``force``).
    movie, truth : path, optional
        Other movie / clean truth instead of the shipped example.
    """
    from emcs.io import atomic_output, check_output, read_stack
    from emcs.tcs.container import load_container
    from emcs.tcs.decode import choose_noise_level, decode_container, iter_decoded
    from emcs.tcs.encode import encode_stack

    say = on_step or (lambda _msg: None)
    movie = Path(movie) if movie is not None else example_path(MOVIE)
    truth = Path(truth) if truth is not None else example_path(TRUTH)
    for p in (movie, truth):
        if not p.exists():
            raise EmcsError("no such file", p)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise EmcsError("exists and is not a folder", outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    npz = str(outdir / (movie.stem + ".npz"))
    rec_path = str(outdir / (movie.stem + "_rec.tif"))
    png = str(outdir / "demo.png")
    for p in (npz, rec_path, png):
        check_output(p, force)

    say(f"encoding {movie} (B={DEMO_B}) -> {npz}")
    enc = encode_stack(movie, npz, B=DEMO_B, seed=DEMO_SEED, force=force)
    say(f"decoding -> {rec_path}")
    dec = decode_container(npz, rec_path, method="auto", device=device, force=force,
                           on_note=lambda m: say(f"note: {m}"))
    raw, _ = read_stack(movie)
    clean, _ = read_stack(truth)
    rec, _ = read_stack(rec_path)
    if clean.shape != raw.shape:
        raise EmcsError(f"truth shape {clean.shape} differs from the movie's {raw.shape}", truth)
    container = load_container(npz)
    naive = naive_movie(container)
    p_rec, s_rec = score(rec, clean)
    p_naive, s_naive = score(naive, clean)
    p_raw, s_raw = score(raw, clean)
    if dec["decoders"] == ["gap-tv"]:
        p_gap, s_gap, gap_seconds = p_rec, s_rec, dec["seconds"]
    else:  # a network decoded: show the classical decoder beside it
        say("decoding again with GAP-TV for comparison")
        t1 = time.perf_counter()
        level, _ = choose_noise_level(container)
        plan = {int(n): ("gap-tv", None) for n in set(container.counts.tolist())}
        from emcs.nn.device import pick_device

        gap = np.concatenate([f for _, f in iter_decoded(container, plan, device=pick_device(device),
                                                          noise=level)])
        gap_seconds = time.perf_counter() - t1
        p_gap, s_gap = score(gap, clean)
    frame = min(DEMO_B // 2, raw.shape[0] - 1)
    with atomic_output(png, force) as tmp:
        _figure(tmp, raw[frame], np.asarray(container.measurements[frame // DEMO_B]), rec[frame],
                clean[frame], frame,
                f"emcs demo: ratio {enc['ratio']:.1f}, {', '.join(dec['decoders'])} PSNR {p_rec:.1f} dB "
                f"(naive {p_naive:.1f} dB, raw {p_raw:.1f} dB)")
    del container
    return {
        "movie": str(movie),
        "truth": str(truth),
        "shape": enc["shape"],
        "dtype": enc["dtype"],
        "B": enc["B"],
        "seed": enc["seed"],
        "ratio": enc["ratio"],
        "container": npz,
        "reconstruction": rec_path,
        "png": png,
        "decoders": dec["decoders"],
        "encode_seconds": enc["seconds"],
        "decode_seconds": dec["seconds"],
        "psnr": p_rec,
        "ssim": s_rec,
        "gaptv_psnr": p_gap,
        "gaptv_ssim": s_gap,
        "gaptv_seconds": gap_seconds,
        "naive_psnr": p_naive,
        "naive_ssim": s_naive,
        "raw_psnr": p_raw,
        "raw_ssim": s_raw,
        "data_range": float(clean.max() - clean.min()),
    }


__all__ = ["examples_dir", "naive_movie", "run_demo", "score"]
