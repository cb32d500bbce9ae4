"""Temporal compressive sensing commands: ``encode`` and ``decode``.

Thin layer: parse and validate options, then delegate to :mod:`emcs.tcs`.
The JSON keys follow docs/cli.md (:mod:`emcs.cli.schema`).
"""

from __future__ import annotations

import contextlib
import os

import typer

from emcs.cli import _dist
from emcs.cli._app import app
from emcs.cli._common import (
    DATASET_OPTION,
    EER_FRAMES_OPTION,
    EER_UPSAMPLING_OPTION,
    FORCE_OPTION,
    JSON_OPTION,
    KEEP_GOING_OPTION,
    QUIET_OPTION,
    Reporter,
    check_stack_output,
    check_stdout_free,
    finish_batch,
    megabytes,
    run_each,
    spooled_stdin,
    stack_options,
    staged_input,
)
from emcs.cli.schema import emit_results, encode_json
from emcs.errors import EmcsError

#: the only container suffix
CONTAINER_SUFFIXES = (".npz",)


def _one_output(output: str | None, inputs: list[str], default: str) -> list[str]:
    """The output of every input: ``-o`` for a single input, else ``<stem><default>`` beside it."""
    if output is not None and len(inputs) > 1:
        raise EmcsError(f"-o/--output names one file, but {len(inputs)} inputs were given; "
                        f"leave out -o to write <stem>{default} beside each input")
    if "-" in inputs and output is None:
        raise EmcsError(f"reading standard input (-) needs -o (a {default} file, or - for "
                        "standard output)")
    if inputs.count("-") > 1:
        raise EmcsError("standard input (-) can be read only once")
    outputs = [output if output is not None else os.path.splitext(p)[0] + default for p in inputs]
    real = [os.path.abspath(o) for o in outputs if o != "-"]
    if len(set(real)) != len(real):
        raise EmcsError(f"two inputs would write the same {default} file; "
                        "give them separately with -o")
    return outputs


def _group_warnings(rep: Reporter, frames: dict[str, int], group: int) -> None:
    """Warn about inputs with fewer frames than a group: no compression, often an unquoted glob."""
    short = [p for p, n in frames.items() if n < group]
    if not short:
        return
    if len(short) > 1:
        rep.warn(f"{len(short)} of {len(frames)} inputs have fewer frames than B={group} "
                 f"(e.g. {short[0]}: {frames[short[0]]}), so each container is about as large as "
                 "its input (ratio ~1 or below); an unquoted glob (emcs encode frames/*.png) "
                 "gives every frame as its own input: quote it ('frames/*.png') to encode one movie")
    else:
        rep.warn(f"{short[0]}: {frames[short[0]]} frames, fewer than B={group}: one short group, "
                 "so the container is about as large as the input")


@app.command("encode")
def encode_cmd(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...",
        help="Image stacks (.tif, .mrc, .npy, .dm3/.dm4, .emd, .ser, .eer, a quoted "
             "'frames/*.png'), or - for standard input."),
    output: str = typer.Option(
        None, "--output", "-o",
        help="Container to write (.npz; only with one input; - writes it to standard output); "
             "default <stem>.npz beside the input."),
    B: int = typer.Option(None, "-B", help="Frames per measurement (default 10, or the --mask's B)."),
    seed: int = typer.Option(None, "--seed", help="Mask seed, 0 .. 2**32-1 (default: random, recorded)."),
    density: float = typer.Option(0.5, "--density", help="Fraction of open mask pixels."),
    mask: str = typer.Option(None, "--mask", help="Explicit binary (B, H, W) mask (.npy/.tif) instead of generated masks."),
    pack: str = typer.Option(
        None, "--pack",
        help="Lossless coding of the measurements: none (one member per measurement, written "
             "once; fastest; the default), "
             "predictive (divides the known masks out: smallest; the default with --quantize), "
             "jpegxl or zstd."),
    quantize: float = typer.Option(
        None, "--quantize", metavar="STEP",
        help="Lossy, for counting data: quantize the sums with a step of STEP x their shot noise "
             "(Anscombe domain; 1 adds 8% noise variance, 2-2.7x smaller than lossless packing)."),
    threads: int = typer.Option(
        None, "--threads", min=1, help="Threads summing each group (default: the cores)."),
    adaptive: bool = typer.Option(
        False, "--adaptive",
        help="Close a group early (2 to B frames) at a scene change, a jump or fast motion, "
             "judged from block means of the frames; more measurements on such movies."),
    dataset: str = DATASET_OPTION,
    eer_frames: int = EER_FRAMES_OPTION,
    eer_upsampling: int = EER_UPSAMPLING_OPTION,
    keep_going: bool = KEEP_GOING_OPTION,
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
    scheduler: str = _dist.SCHEDULER_OPTION,
    cluster: str = _dist.CLUSTER_OPTION,
    cluster_config: str = _dist.CLUSTER_CONFIG_OPTION,
    resources: str = _dist.RESOURCES_OPTION,
) -> None:
    """Compress movies: every B frames become one coded measurement (Y = sum C_b X_b).

    Quote globs: emcs encode 'frames/*.png' -o movie.npz makes one movie of the
    files; unquoted, the shell gives every file as its own input.
    """
    from emcs.tcs.encode import load_mask_file

    rep = Reporter(quiet, as_json)
    dist = _dist.Dist(scheduler, cluster, cluster_config, resources)
    check_stdout_free(output, as_json)
    outputs = _one_output(output, inputs, ".npz")
    masks = None
    if mask is not None:
        if seed is not None:
            raise EmcsError("--seed and --mask exclude each other (an explicit mask has no seed)")
        masks = load_mask_file(mask)
        if B is not None and B != masks.shape[0]:
            raise EmcsError(f"the mask has {masks.shape[0]} frames but -B is {B}", mask)
    B = 10 if B is None else B
    group = masks.shape[0] if masks is not None else B
    options = stack_options(dataset, eer_frames, eer_upsampling)
    with contextlib.ExitStack() as stack:
        # standard input is read once, into a file, before anything else
        sources = [stack.enter_context(staged_input(p, options, stdin=True)) if p == "-" else p
                   for p in inputs]
        jobs = list(zip(inputs, sources, outputs, strict=True))
        # check every input and output before any work (a bad file stops the run, or with
        # --keep-going is listed at the end)
        frames: dict[str, int] = {}

        def check(job):
            from emcs.io import check_output, open_stack

            inp, src, out = job
            with open_stack(src, **(options if src == inp else stack_options(None))) as opened:
                if masks is not None and masks.shape[1:] != opened.frame_shape:
                    raise EmcsError(f"the mask has frames of {masks.shape[1:]} but {inp} has "
                                    f"{opened.frame_shape}", mask)
                frames[inp] = opened.n_frames
            if out != "-" and os.path.abspath(src) == os.path.abspath(out):
                raise EmcsError("the output would overwrite the input", out)
            check_output(out, force, suffixes=CONTAINER_SUFFIXES)
            return job

        jobs, failures = run_each(rep, jobs, check, keep_going)
        settings = dict(B=B, seed=seed, density=density, masks=masks, force=force, pack=pack,
                        quantize=quantize, mask_source=mask, threads=threads, adaptive=adaptive)

        def encode(job):
            inp, src, out = job
            with staged_input(src, options if src == inp else stack_options(None)) as path:
                return _encode_one(rep, inp, path, out, frames[inp], group, settings, dist)

        results, failed = dist.run_each(rep, jobs, encode, keep_going)
    _group_warnings(rep, {r["input"]: r["shape"][0] for r in results}, group)
    emit_results(rep, results, failures + failed)
    finish_batch(failures + failed, len(inputs))


def _encode_one(rep: Reporter, inp: str, path: str, out: str, n_frames: int, group: int,
                settings: dict, dist: _dist.Dist) -> dict:
    """Encode one input (``path``: the file to read, ``inp``: its name on the command line)."""
    from emcs.io.stdio import stdout_output
    from emcs.tcs.encode import encode_stack

    with contextlib.ExitStack() as stack:
        target = stack.enter_context(stdout_output(".npz")) if out == "-" else out
        # adaptive groups: how many is known only at the end, so the bar counts groups
        total, unit, per_step = ((None, "groups", 1) if settings["adaptive"] else
                                 (n_frames, "frames", group))
        with rep.progress(f"Encoding {os.path.basename(inp)}", total, unit, per_step) as advance:
            res = dist.call(rep, "Encoding", encode_stack, chunked="encode_chunked")(
                path, target, progress=advance, **settings)
        res = encode_json({**res, "input": inp, "output": out})
    T, H, W = res["shape"]
    mask_txt = (f"seed {res['seed']}, density {res['density']:g}"
                if res["mask_kind"] == "generated" else f"explicit mask {settings['mask_source']}")
    quantize = settings["quantize"]
    rep.info(
        f"{inp} -> {out}: {T} frames {H}x{W} {res['dtype']}, B={res['B']}"
        + (", adaptive groups of {min_frames}-{max_frames} frames (mean {mean_frames:.1f})".format(
            **res["groups"]) if settings["adaptive"] else "")
        + f", {res['n_measurements']} measurements ({res['measurement_dtype']}"
        + (f", {res['measurement_codec']}" if res.get("measurement_codec") else "")
        + (f", Anscombe step {quantize:g}" if quantize else "") + f"), {mask_txt}; "
        f"{megabytes(res['data_bytes'])} -> {megabytes(res['container_bytes'])}, ratio {res['ratio']:.2f}, "
        f"{res['mb_per_s']:.0f} MB/s"
    )
    if res["ratio"] < 1:
        rep.warn(f"{out}: ratio {res['ratio']:.2f} < 1, the container is larger than its input")
    return res


@app.command("decode")
def decode_cmd(
    containers: list[str] = typer.Argument(
        ..., metavar="CONTAINER...",
        help="Measurement containers (.npz) from `emcs encode`, or - for standard input."),
    output: str = typer.Option(
        None, "--output", "-o",
        help="Output stack (.tif, .mrc, .npy, a frame pattern 'frames/f_%04d.png', or - for a TIFF "
             "on standard output; only with one container); default <stem>.tif beside it."),
    method: str = typer.Option(
        "auto", "--method", "-m",
        help="auto (a network if one covers B and the mask density, else GAP-TV with a note), "
             "net (a network, an error if none covers them), gap-tv, or a network model name."),
    model: str = typer.Option(
        None, "--model", metavar="NAME|PATH",
        help="The network: a model name (emcs models) or a .safetensors file with its .json card "
             "beside it (e.g. from emcs train tcs)."),
    dtype: str = typer.Option(
        "float32", "--dtype", metavar="float32|input",
        help="Output pixel type: float32 (keeps the decoders' sub-count precision) or input "
             "(rounded to the input's type: 4x smaller for uint8 input, but 0.3-0.5 dB worse "
             "against the truth at ~9 counts per pixel, benchmarks/decode_dtype.md)."),
    iters: int = typer.Option(40, "--iters", help="GAP-TV iterations."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    noise: str = typer.Option("auto", "--noise", help="GAP-TV settings: auto (from the noise the encoder measured), low or high."),
    ensemble: int = typer.Option(
        1, "--ensemble", help="Network: average over 1, 2, 4 or 8 flips/rotations (N x slower, a little sharper)."),
    precision: str = typer.Option(
        "auto", "--precision", metavar="auto|float32|int8|float16|bfloat16",
        help="Network arithmetic: auto = float16 on a GPU; on the CPU for tcs-unfold models "
             "bfloat16 where the CPU has it natively (AMX, AVX512-BF16: ~1.8x less CPU than float32 "
             "at 2048^2), else int8 (1.1-1.7x less, by CPU); held-out PSNR within 0.03 dB of float32, "
             "and each input shape is checked against float32 once and runs in float32 where it is "
             "wrong; float32 otherwise."),
    static_blend: str = typer.Option(
        "on", "--static-blend", metavar="on|static|off",
        help="on: pull the network's frames toward one still image where the measurement shows "
             "no motion, and toward a drifting still image where the scene drifts rigidly "
             "(near-static specimens +2-7 dB, moving ones +0.2-0.4 dB on average, "
             "benchmarks/tcs_heldout.md; +8 % CPU); static: the still image only; off: the "
             "network's frames as they are."),
    keep_going: bool = KEEP_GOING_OPTION,
    force: bool = FORCE_OPTION,
    quiet: bool = QUIET_OPTION,
    as_json: bool = JSON_OPTION,
    scheduler: str = _dist.SCHEDULER_OPTION,
    cluster: str = _dist.CLUSTER_OPTION,
    cluster_config: str = _dist.CLUSTER_CONFIG_OPTION,
    resources: str = _dist.RESOURCES_OPTION,
) -> None:
    """Reconstruct the movie from a measurement container."""
    from emcs.io import is_pattern

    rep = Reporter(quiet, as_json)
    dist = _dist.Dist(scheduler, cluster, cluster_config, resources)
    check_stdout_free(output, as_json)
    outputs = _one_output(output, containers, ".tif")
    for out in outputs if not keep_going else ():
        check_stack_output(out, force)
    from emcs.cli.models import resolve

    settings = dict(method=method.strip().lower(), model=resolve(model, "tcs"), dtype=dtype.strip().lower(),
                    iters=iters, device=device, force=force, noise=noise.strip().lower(),
                    ensemble=ensemble, precision=precision.strip().lower())
    settings["static_blend"] = static_blend.strip().lower()

    def decode(job):
        container, out = job
        check_stack_output(out, force)
        if is_pattern(out) and out.lower().endswith(".png") and settings["dtype"] != "input":
            raise EmcsError("PNG frames hold integers: add --dtype input, or write .tif frames "
                            "(f_%04d.tif)", out)
        with spooled_stdin(container, ".npz") as path:
            return _decode_one(rep, container, path, out, settings, dist)

    results, failures = dist.run_each(rep, list(zip(containers, outputs, strict=True)), decode, keep_going)
    emit_results(rep, results, failures)
    finish_batch(failures, len(containers))


def _decode_one(rep: Reporter, container: str, path: str, out: str, settings: dict,
                dist: _dist.Dist) -> dict:
    """Decode one container (``path``: the file to read, ``container``: its name on the command line)."""
    from emcs.tcs.container import open_container
    from emcs.tcs.decode import decode_container

    with open_container(path) as opened, \
            rep.progress(f"Decoding {os.path.basename(container)}", opened.input_shape[0],
                         per_step=opened.B) as advance:
        res = dist.call(rep, "Decoding", decode_container, network=settings["method"] != "gap-tv",
                        chunked="decode_chunked")(opened, out, progress=advance, on_note=rep.note, **settings)
    res["input"] = container
    T, H, W = res["shape"]
    rep.info(
        f"{container} -> {res['output']}: {T} frames {H}x{W} {res['dtype']} with "
        f"{', '.join(res['decoders'])}"
        + (f" (noise {res['noise_level']})" if "gap-tv" in res["decoders"] else "")
        + (f" ({res['precision']})" if res.get("precision") else "")
        + f" on {res['device']} in {res['seconds']:.1f} s "
        f"({res['frames_per_s']:.1f} frames/s)"
    )
    return res
