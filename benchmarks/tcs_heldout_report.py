"""The report of the held-out TCS quality table (``bench_tcs_heldout.py report``): result files
merged, margins per table, kind and dose, the network-only table, the blend and lossless sections.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tcs_heldout_movies import BLENDS, CODECS, REAL_KINDS, SUBSET, TABLES, cases, plain_key


def merge(paths: list[Path]) -> tuple[dict, dict]:
    """Every case's results from all files (later files add methods), and the models used."""
    merged: dict = {}
    models: dict = {}
    for path in paths:
        store = json.loads(path.read_text())
        models.update(store.get("settings", {}).get("models", {}))
        for key, row in store["cases"].items():
            have = merged.setdefault(key, {"results": {}})
            have.update({k: v for k, v in row.items() if k != "results"})
            have["results"].update(row["results"])
    return merged, models


def psnr(row: dict, method: str) -> float | None:
    return row["results"].get(method, {}).get("psnr_clean")


def best_codec(row: dict) -> tuple[float | None, bool]:
    """PSNR of the best codec at the case's bytes, and whether it was given more bytes."""
    got = [(psnr(row, c), "over_budget" in row["results"].get(c, {})) for c in CODECS]
    got = [g for g in got if g[0] is not None]
    return max(got) if len(got) == len(CODECS) else (None, False)


def default_psnr(row: dict, state: str, models: dict) -> tuple[float | None, bool]:
    """PSNR of what ``emcs decode`` picks, and whether that is the network: ``shipped`` (the
    recorded auto choice with the shipped models) or ``new`` (the new network where its card
    covers the case, else GAP-TV)."""
    if state == "shipped" or state in BLENDS:
        net = row["auto_shipped"] != "gap-tv"
        return psnr(row, state if net or state in BLENDS else "gap-tv"), net
    else:
        lo_b, hi_b = models["new"]["B_range"]
        lo_d, hi_d = models["new"]["density_range"]
        net = lo_b <= row["B"] <= hi_b and lo_d - 1e-9 <= row["mask_density"] <= hi_d + 1e-9
    return psnr(row, state if net else "gap-tv"), net


def spread(values: list[float]) -> str:
    if not values:
        return ""
    return f"{min(values):+.1f} … {max(values):+.1f} ({np.mean(values):+.1f})"


def margins(rows: list[dict], state: str, models: dict) -> dict | None:
    """Per-case margins of the default decoder in one state over a group of cases."""
    out = {"default": [], "codec": [], "jpegxl": [], "gap": [], "lost": 0, "over": 0, "net": 0}
    for row in rows:
        d, net = default_psnr(row, state, models)
        best, over = best_codec(row)
        gap, jxl = psnr(row, "gap-tv"), psnr(row, "jpegxl")
        if d is None or best is None or gap is None:
            continue
        out["default"].append(d)
        out["codec"].append(d - best)
        out["jpegxl"].append(d - jxl)
        out["gap"].append(d - gap)
        out["lost"] += d < best
        out["over"] += over
        out["net"] += net
    return out if out["default"] else None


def table(cases_: dict, models: dict, group_by, label: str, states=("shipped", "new")) -> str:
    groups: dict = {}
    for row in cases_.values():
        key = group_by(row)
        if key is not None:
            groups.setdefault(key, []).append(row)
    head = f"| {label} | movies | GAP-TV | best codec |"
    for state in states:
        head += (f" {state}: default | − best codec, min … max (mean) | − JPEG XL | − GAP-TV |"
                 " loses to a codec |")
    lines = [head, "|" + "---|" * (4 + 5 * len(states))]
    for key in sorted(groups):
        rows = groups[key]
        gap = [psnr(r, "gap-tv") for r in rows if psnr(r, "gap-tv") is not None]
        codec = [best_codec(r)[0] for r in rows if best_codec(r)[0] is not None]
        line = f"| {key} | {len(rows)} | {np.mean(gap):.2f} | {np.mean(codec):.2f} |"
        for state in states:
            m = margins(rows, state, models) if state != "new" or "new" in models else None
            if m is None:
                line += " | | | | |"
                continue
            who = "net" if m["net"] == len(m["default"]) else (
                "GAP-TV" if m["net"] == 0 else f"net on {m['net']}")
            over = f" ({m['over']} over budget)" if m["over"] else ""
            line += (f" {np.mean(m['default']):.2f} ({who}) | {spread(m['codec'])}{over} |"
                     f" {spread(m['jpegxl'])} | {spread(m['gap'])} | {m['lost']}/{len(m['default'])} |")
        lines.append(line)
    return "\n".join(lines)


def net_table(cases_: dict, *groupings) -> str:
    """Each network minus GAP-TV per group, whether or not its card covers the cases."""
    groups: dict = {}
    for row in cases_.values():
        for group_by in groupings:
            key = group_by(row)
            if key is not None:
                groups.setdefault(key, []).append(row)
    lines = ["| group | cases | shipped − GAP-TV | covered | new − GAP-TV | covered |",
             "|---|---|---|---|---|---|"]
    for key in sorted(groups):
        rows = groups[key]
        line = f"| {key[0]} {key[1]} | {len(rows)} |"
        for state in ("shipped", "new"):
            got = [(psnr(r, state) - psnr(r, "gap-tv"), r["results"][state]["covered"])
                   for r in rows if psnr(r, state) is not None and psnr(r, "gap-tv") is not None]
            line += (f" {spread([g for g, _ in got])} | {sum(c for _, c in got)}/{len(got)} |"
                     if got else " | |")
        lines.append(line)
    return "\n".join(lines)


def report(paths: list[Path]) -> str:
    cases_, models = merge(paths)
    defined = {c["key"] for lossless in (False, True) for c in cases(list(TABLES), lossless)}
    cases_ = {k: r for k, r in cases_.items() if k in defined and "auto_shipped" in r}
    packed = {k: r for k, r in cases_.items() if r.get("pack")}
    cases_ = {k: r for k, r in cases_.items() if not r.get("pack")}
    subset = {(k, m) for k, m, _ in SUBSET}

    def main(r):
        return (r["B"], r["q"]) if standard(r) and r["density"] == 0.5 else None

    def standard(r):
        return r["mask"] == "generated" and "-" not in r["kind"]

    sections = [
        ("B and --quantize (density 0.5, generated masks)", "(B, quantize)", main),
        ("Per kind", "(B, q, kind)", lambda r: main(r) and main(r) + (r["kind"],)),
        ("Per dose (counts/pixel)", "(B, q, dose)", lambda r: main(r) and main(r) + (r["dose"],)),
        ("Mask density (B = 10)", "(density, quantize)",
         lambda r: (r["density"], r["q"]) if standard(r) and r["B"] == 10 and r["q"] < 2
         and (r["kind"], r["m"]) in subset else None),
        ("Explicit structured masks (B = 10, density 0.5)", "(mask, quantize)",
         lambda r: (r["mask"], r["q"]) if r["mask"] != "generated" else None),
        ("Diagnostic: real-image movies, original vs smoothed scene (plain containers)", "(B, kind)",
         lambda r: (r["B"], r["kind"]) if r["B"] >= 10 and r["q"] == 0 and r["density"] == 0.5
         and r["mask"] == "generated" and r["kind"].split("-")[0] in REAL_KINDS else None),
    ]
    out = ["Models: " + json.dumps(models)]
    for title, label, group in sections:
        out += ["", f"## {title}", "", table(cases_, models, group, label)]
    out += ["", "## The networks themselves, also where their cards do not cover the case "
            "(network − GAP-TV, dB)", "",
            net_table(cases_, lambda r: ("B", r["B"]) if standard(r) and r["density"] == 0.5
                      else None, lambda r: ("density", r["density"]) if standard(r) and r["B"] == 10
                      and r["q"] < 2 and (r["kind"], r["m"]) in subset else None,
                      lambda r: ("mask", r["mask"]) if r["mask"] != "generated" else None)]
    for new, old in (("blend", "shipped"), ("drift", "blend")):
        if any(new in r["results"] for r in cases_.values()):
            out += blend_report(cases_, models, main, new, old)
    if packed:
        out += ["", "## Lossless predictive packing: the Q = 0 cases plain and packed "
                "(the default decoder, drift)", "", lossless_table(cases_, packed, models)]
    return "\n".join(out) + "\n"


def lossless_table(plain: dict, packed: dict, models: dict, state: str = "drift") -> str:
    """Per table (main / static) and B: the plain cases beside their losslessly packed twins
    (the same decoded frames; the codecs at the packed container's measurement bytes)."""
    groups: dict = {}
    for key, row in packed.items():
        twin = plain.get(plain_key(key))
        if twin is not None:
            table_ = "static" if row["kind"].endswith("-static") else "main"
            groups.setdefault((table_, row["B"]), []).append((twin, row))
    lines = ["| table | B | movies | measurement bytes plain | packed | plain / packed | default |"
             + " best codec plain | packed | plain: − best codec, min … max (mean) | − JPEG XL |"
             + " − GAP-TV | loses to a codec | packed: − best codec, min … max (mean) | − JPEG XL |"
             + " − GAP-TV | loses to a codec |", "|" + "---|" * 17]
    for (table_, B), pairs in sorted(groups.items()):
        nbytes = [[r["measurement_bytes"] for r in side] for side in zip(*pairs, strict=True)]
        ratio = np.mean([a / b for a, b in zip(*nbytes, strict=True)])
        default = np.mean([default_psnr(r, state, models)[0] or np.nan for r, _ in pairs])
        codec = [np.mean([best_codec(r)[0] or np.nan for r in side]) for side in zip(*pairs, strict=True)]
        line = (f"| {table_} | {B} | {len(pairs)} | {min(nbytes[0])}–{max(nbytes[0])} |"
                f" {min(nbytes[1])}–{max(nbytes[1])} | {ratio:.2f} | {default:.2f} |"
                f" {codec[0]:.2f} | {codec[1]:.2f} |")
        for side in zip(*pairs, strict=True):
            m = margins(list(side), state, models)
            if m is None:
                line += " | | | |"
                continue
            over = f" ({m['over']} over budget)" if m["over"] else ""
            line += (f" {spread(m['codec'])}{over} | {spread(m['jpegxl'])} | {spread(m['gap'])} |"
                     f" {m['lost']}/{len(m['default'])} |")
        lines.append(line)
    return "\n".join(lines)


def blend_report(cases_: dict, models: dict, main, new: str = "blend", old: str = "shipped") -> list[str]:
    """A blend (``new``: ``blend`` or ``drift``) against the decode without it (``old``)."""
    def static(r):
        return (r["B"], r["q"]) if r["kind"].endswith("-static") else None

    out = []
    for title, group in (("main table", main), ("near-static row", static)):
        out += ["", f"## {new} − {old}: {title} (B, quantize)", "",
                table(cases_, models, group, "(B, quantize)", states=(old, new))]
    lines = [f"| movie | dose | cases | {new} − {old}, min … max (mean) | at B = 10 / 20 / 30 (mean) |"
             f" {new} − best codec, at B = 10 / 20 / 30 (mean) | {new} − GAP-TV, at B = 10 / 20 / 30 (mean) |",
             "|---|---|---|---|---|---|---|"]
    movies: dict = {}
    for r in cases_.values():
        if new in r["results"] and old in r["results"] and (main(r) or static(r)):
            movies.setdefault((r["kind"], r["m"], r["dose"]), []).append(r)

    def per_b(pairs):
        return " / ".join(f"{np.mean([d for b, d in pairs if b == B]):+.2f}" for B in (10, 20, 30))

    for (kind, m, dose), rows in sorted(movies.items()):
        ours = [(r["B"], psnr(r, new)) for r in rows]
        diff = [(b, p - default_psnr(r, old, models)[0]) for (b, p), r in zip(ours, rows, strict=True)]
        codec = [(b, p - best_codec(r)[0]) for (b, p), r in zip(ours, rows, strict=True)]
        gap = [(b, p - psnr(r, "gap-tv")) for (b, p), r in zip(ours, rows, strict=True)]
        d = [d for _, d in diff]
        lines.append(f"| {kind} {m} ({rows[0]['source']}) | {dose} | {len(rows)} | "
                     f"{min(d):+.2f} … {max(d):+.2f} ({np.mean(d):+.2f}) | {per_b(diff)} | {per_b(codec)} |"
                     f" {per_b(gap)} |")
    return out + ["", f"## {new} − {old} per movie (dB; all B and quantize steps)", "", "\n".join(lines)]
