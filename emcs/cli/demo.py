"""Command ``emcs demo``: encode and decode the example movie, print quality and timing.

Parse, call :func:`emcs.demo.run_demo`, print.
"""

from __future__ import annotations

from pathlib import Path

import typer

from emcs.cli._app import app
from emcs.cli._common import FORCE_OPTION, JSON_OPTION, QUIET_OPTION, Reporter
from emcs.errors import EmcsError


@app.command("demo")
def demo_cmd(
    outdir: Path = typer.Option(Path("emcs-demo"), "--output", "-o", help="Folder for the demo's files."),
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Encode and decode the example movie; print quality and timing, write a PNG."""
    from emcs.demo import run_demo

    if str(outdir) == "-":
        raise EmcsError("-o names a folder for the demo's files; standard output (-) cannot "
                        "hold them")
    rep = Reporter(quiet, as_json)
    res = run_demo(outdir, force=force, on_step=rep.info)
    rows = [
        ("movie", f"{res['movie']} ({res['shape'][0]} frames {res['shape'][1]}x{res['shape'][2]} {res['dtype']})"),
        ("B", str(res["B"])),
        ("compression ratio", f"{res['ratio']:.2f} (input pixel bytes / container bytes)"),
        ("encode", f"{res['encode_seconds']:.2f} s"),
        ("decode", f"{res['decode_seconds']:.2f} s ({', '.join(res['decoders'])})"),
        (f"decoded ({', '.join(res['decoders'])}) vs clean", f"PSNR {res['psnr']:.2f} dB, SSIM {res['ssim']:.3f}"),
        ("GAP-TV vs clean", f"PSNR {res['gaptv_psnr']:.2f} dB, SSIM {res['gaptv_ssim']:.3f} ({res['gaptv_seconds']:.2f} s)"),
        ("naive Y/sum(C) vs clean", f"PSNR {res['naive_psnr']:.2f} dB, SSIM {res['naive_ssim']:.3f}"),
        ("raw (noisy) vs clean", f"PSNR {res['raw_psnr']:.2f} dB, SSIM {res['raw_ssim']:.3f}"),
        ("figure", res["png"]),
    ]
    rep.table("emcs demo", rows)
    rep.emit_json(res)
