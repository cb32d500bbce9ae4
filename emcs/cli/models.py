"""``emcs models``: the networks emcs can use, shipped and the user's own.

Every ``*.safetensors`` with its JSON card in the folders of
:func:`emcs.nn.weights.model_dirs` (``EMCS_MODELS`` first, then the shipped
``emcs/models``; the first of a name wins), or the files given on the command
line (e.g. written by ``emcs train``). A file a command can use with ``--model``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from emcs.cli._app import app
from emcs.cli._common import JSON_OPTION, Reporter
from emcs.errors import EmcsError

CAPABILITIES = ("tcs", "dlss", "sim")
#: card keys that hold evaluation results (copied verbatim into the JSON)
_METRIC_KEYS = ("metrics", "held_out_metrics", "held_out", "synthetic_validation_rmse")


def capability(card: dict) -> str | None:
    """``tcs``, ``dlss`` or ``sim`` from a card's architecture name (None: not an emcs network)."""
    arch = str(card.get("architecture", ""))
    for prefix, cap in (("tcs", "tcs"), ("dlss", "dlss"), ("vdlsim", "sim")):
        if arch.startswith(prefix):
            return cap
    return None


def serves(card: dict) -> str:
    """What a network covers: B and mask density (TCS), grid pitches (DLSS), 2x SR (SIM)."""
    cap = capability(card)
    if cap == "tcs" and card.get("B_range"):
        b0, b1 = card["B_range"]
        text = f"B {b0}" if b0 == b1 else f"B {b0}-{b1}"
        if card.get("density_range"):
            d0, d1 = card["density_range"]
            text += f", density {d0:g}-{d1:g}"
        return text
    if cap == "dlss" and card.get("factors"):
        return f"s {min(card['factors'])}-{max(card['factors'])}"
    if cap == "sim":
        return "2x SR, raw A x P frames" if card.get("architecture") == "vdlsim-raw" else "2x SR"
    return "?"


def headline(name: str, card: dict) -> str:
    """One line of the card's held-out results, where the card has a known layout."""
    held = (card.get("metrics") or {}).get("held_out") or {}
    if "B=10" in held and name in held["B=10"]:
        ours, gap = held["B=10"][name], held["B=10"].get("gap-tv", {})
        text = f"B=10 PSNR {ours.get('psnr_clean', float('nan')):.1f} dB vs clean"
        return text + (f" (GAP-TV {gap['psnr_clean']:.1f})" if "psnr_clean" in gap else "")
    rmse = card.get("synthetic_validation_rmse")
    if isinstance(rmse, dict) and "net" in rmse:
        return f"RMSE {rmse['net']:.4f} (bilinear {rmse.get('bilinear', float('nan')):.4f})"
    levels = (card.get("held_out") or {}).get("levels")
    if levels and isinstance(levels[0], dict) and "this_network" in levels[0]:
        lv = next((lv for lv in levels if lv.get("snr") == 5.0), levels[0])
        return (f"PSNR {lv['this_network'].get('psnr', float('nan')):.1f} dB at SNR {lv.get('snr'):g} "
                f"(Wiener {lv.get('wiener', {}).get('psnr', float('nan')):.1f})")
    if levels and isinstance(levels[0], dict) and "net_widefield" in levels[0]:
        lv = levels[0]
        return f"PSNR {lv['net_widefield'].get('psnr', float('nan')):.1f} dB at {lv.get('counts')} counts"
    return "in the card" if any(card.get(k) for k in _METRIC_KEYS) else "none"


def describe(path: Path, source: str) -> dict | None:
    """A model's entry, or None for a file that is no emcs network."""
    from emcs.nn.weights import read_card

    card = read_card(path)
    cap = capability(card)
    if cap is None:
        return None
    name = path.stem
    return {"name": name, "capability": cap, "serves": serves(card),
            "parameters": card.get("parameters"), "headline": headline(name, card),
            "rank": card.get("rank"), "source": source, "path": str(path),
            "metrics": {k: card[k] for k in _METRIC_KEYS if k in card}}


def find_all() -> list[dict]:
    """Every network in :func:`emcs.nn.weights.model_dirs` (the first of a name wins)."""
    from emcs.nn.weights import model_dirs, models_dir

    shipped = models_dir().resolve()
    seen: dict[str, dict] = {}
    for folder in model_dirs():
        source = "shipped" if folder.resolve() == shipped else "EMCS_MODELS"
        for path in sorted(folder.glob("*.safetensors")):
            if path.stem in seen:
                continue
            try:
                entry = describe(path, source)
            except EmcsError:
                continue  # damaged or card-less files are reported when used
            if entry is not None:
                seen[path.stem] = entry
    return list(seen.values())


def resolve(model: str | None, cap: str) -> str | None:
    """``--model``: a name listed by ``emcs models`` for capability ``cap`` becomes its weights
    path; anything else (a path, an unknown name for the library to refuse) is kept."""
    if model is None or os.path.exists(model) or model.endswith(".safetensors"):
        return model
    for entry in find_all():
        if entry["name"] == model and entry["capability"] == cap:
            return entry["path"]
    return model


@app.command("models")
def models_cmd(
    files: list[str] = typer.Argument(
        None, metavar="[WEIGHTS.safetensors]...",
        help="Describe these weights files (e.g. from emcs train) instead of the installed ones."),
    only: str = typer.Option(None, "--capability", metavar="tcs|dlss|sim", help="Only this capability."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the networks: shipped, from EMCS_MODELS folders, or given files (use with --model)."""
    rep = Reporter(False, as_json)
    if only is not None and only not in CAPABILITIES:
        raise EmcsError(f"--capability must be one of {', '.join(CAPABILITIES)}, got {only!r}")
    if files:
        entries = []
        for f in files:
            if not os.path.isfile(f):
                raise EmcsError("no such weights file", f)
            entry = describe(Path(f), "file")
            if entry is None:
                raise EmcsError("the model card names no emcs network architecture", f)
            entries.append(entry)
    else:
        entries = find_all()
    entries = [e for e in entries if only is None or e["capability"] == only]
    entries.sort(key=lambda e: (CAPABILITIES.index(e["capability"]), e["rank"] or 0, e["name"]))
    _print(rep, entries)
    rep.emit_json({"models": entries})


def _print(rep: Reporter, entries: list[dict]) -> None:
    if rep.quiet or rep.as_json:
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                  title="networks (--model NAME|PATH; EMCS_MODELS folders first)")
    for column in ("name", "for", "serves", "parameters", "card metrics", "where"):
        table.add_column(column, no_wrap=column != "card metrics")
    for e in entries:
        where = e["source"] if e["source"] == "shipped" else e["path"]
        params = f"{e['parameters']:,}" if isinstance(e["parameters"], int) else "?"
        table.add_row(e["name"], e["capability"], e["serves"], params, e["headline"], where)
    rep.console.print(table)
