"""The HTML reproduction report: what a reader sees first.

One self-contained page (figures embedded, no network) built with jinja2 from the suite's
outputs: tables/table<N>.csv and their provenance files, the paper's numbers in reported/,
and figures/*.png.  For every table it shows the paper's rows beside the measured values,
the delta, a status per cell, the fidelity, and the provenance (commit, configuration hash,
seeds, library versions, machine, date).  A table whose stored configuration hash differs
from the current code and data is marked stale; a table never run is listed as such.

Written by run_all.py at the end of every run (report/index.html).
"""

from __future__ import annotations

import base64
import importlib
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from reproductions import runner

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

STATUS_TEXT = {
    "match": "matches at printed precision",
    "within_tolerance": "within tolerance",
    "off": "off",
    "trend_agrees": "trend agrees",
    "trend_disagrees": "trend disagrees",
    "no_trend": "one row: no trend",
    "not_measured": "not measured at this fidelity",
    "reported_only": "reported only",
}
FIGURES = (
    ("figure3_counts.png", "Fig. 3 (count side): ImageNet Top-1 against Params and M-Adds"),
    ("scale_stress_cost.png", "Figs. 4/10 (cost side): M-Adds per test resolution in the scale stress test"),
    ("span_ablation.png", "Tab. 7: the axial span against cost and accuracy"),
    ("madds_breakdown.png", "Where the cost is: M-Adds by operation"),
)


def _table_section(n: int) -> dict:
    spec = importlib.import_module(f"reproductions.table{n}").SPEC
    reported = runner.load_reported(n)
    labels = reported.drop_duplicates("row").set_index("row")[["label", "attributes"]]
    section = {"number": n, "title": spec.title, "state": "not run", "rows": [], "provenance": None,
               "status_counts": {}, "errors": {}, "trained": _trained_sections(spec, labels)}
    csv_path = runner.TABLES_DIR / f"table{n}.csv"
    if not csv_path.exists():
        return section
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    prov_path = runner.TABLES_DIR / f"table{n}.provenance.json"
    provenance = json.loads(prov_path.read_text()) if prov_path.exists() else None
    current = runner.table_fingerprint(spec)
    if provenance is None:
        section["state"] = "stale"
        section["stale_reason"] = "no provenance file: produced by an older version of the suite"
    elif provenance["config_hash"] != current:
        section["state"] = "stale"
        section["stale_reason"] = (f"produced with configuration {provenance['config_hash']}; the current "
                                   f"code and data give {current}: re-run "
                                   f"`python run_all.py --tables {n}`")
    else:
        section["state"] = "fresh"
    section["provenance"] = provenance
    section["machine"] = _machine_text(provenance)
    section["status_counts"] = dict(Counter(df["status"]) + Counter(
        r["status"] for t in section["trained"] for r in t["rows"]))
    for metric in ("Params", "M-Adds"):
        err = runner.mean_abs_rel_error(df, metric)
        if err is not None:
            section["errors"][metric] = f"{100 * err:.2f} %"
    for _, r in df.iterrows():
        label = labels.loc[r["row"]] if r["row"] in labels.index else None
        section["rows"].append({
            "row": r["row"], "label": label["label"] if label is not None else r["row"],
            "attributes": (label["attributes"] if label is not None else "").replace(";", ", "),
            "metric": r["metric"], "unit": r["unit"], "reported": r["reported"] or "-",
            "measured": f"{float(r['measured']):.3f}" if r["measured"] else "",
            "delta": r["delta"], "rel_delta": f"{100 * float(r['rel_delta']):+.2f} %" if r["rel_delta"] else "",
            "fidelity": r["fidelity"], "status": r["status"],
            "status_text": STATUS_TEXT.get(r["status"], r["status"]), "note": r["note"],
        })
    return section


def _trained_sections(spec, labels) -> list[dict]:
    """The proxy and full results of a table (tables/table<N>.<fidelity>.csv), if run."""
    from reproductions import trained

    out = []
    for fidelity in ("proxy", "full"):
        stem = trained.output_stem(spec, fidelity)
        csv_path = runner.TABLES_DIR / f"{stem}.csv"
        if not csv_path.exists():
            continue
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        prov_path = runner.TABLES_DIR / f"{stem}.provenance.json"
        provenance = json.loads(prov_path.read_text()) if prov_path.exists() else None
        fresh = provenance is not None and provenance["config_hash"] == trained.fingerprint(spec)
        rows = [{"label": labels.loc[r["row"], "label"] if r["row"] in labels.index else r["row"],
                 "metric": r["metric"], "unit": r["unit"], "reported": r["reported"] or "-",
                 "measured": f"{float(r['measured']):.2f} ± {float(r['std']):.2f}" if r["measured"] else "",
                 "values": r.get("values", "").replace(";", ", "),
                 "seeds": r["seeds"], "status": r["status"],
                 "status_text": STATUS_TEXT.get(r["status"], r["status"]), "note": r["note"]}
                for _, r in df.iterrows()]
        previous = (provenance or {}).get("previous_run")
        out.append({"fidelity": fidelity, "rows": rows, "provenance": provenance,
                    "state": "fresh" if fresh else "stale", "machine": _machine_text(provenance),
                    "previous": previous and {
                        "machine": previous["machine"], "date": previous.get("date"),
                        "within": sum(c["within_seed_noise"] for c in previous["comparison"]),
                        "cells": len(previous["comparison"])},
                    "trends": (provenance or {}).get("trends", {})})
    return out


def _machine_text(provenance: dict | None) -> str:
    """The machine a table was measured on, in one line (older provenance stored a string)."""
    from runtime import machine

    if not provenance:
        return ""
    stored = provenance.get("machine")
    return stored if isinstance(stored, str) else machine.summary(stored)


def _figures() -> list[dict]:
    out = []
    for name, caption in FIGURES:
        path = runner.FIGURES_DIR / name
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode()
            out.append({"name": name, "caption": caption, "src": f"data:image/png;base64,{data}"})
    return out


OTHER_METHOD = re.compile(r"reported only: (.+?) is another paper's method, listed by the paper for comparison")


def _unmeasured(sections: list[dict]) -> list[dict]:
    """Why cells could not be measured here, grouped by reason; other papers' methods in one line."""
    reasons: Counter = Counter()
    others: dict[str, None] = {}
    for s in sections:
        for r in s["rows"]:
            if r["status"] not in ("not_measured", "reported_only"):
                continue
            reason = r["note"].split("; preset ")[0].replace("printed as '-' in the paper; ", "")
            other = OTHER_METHOD.search(reason)
            if other:
                others[other.group(1)] = None
                reason = "reported only: other papers' methods, listed by the paper for comparison"
            reasons[(r["status"], reason or STATUS_TEXT[r["status"]])] += 1
    rows = [{"status": STATUS_TEXT[k[0]], "reason": k[1], "cells": v} for k, v in reasons.most_common()]
    for row in rows:
        if row["reason"].startswith("reported only: other papers' methods"):
            row["reason"] += ": " + ", ".join(others)
    return rows


def render() -> str:
    import jinja2

    sections = [_table_section(n) for n in range(1, 10)]
    overall = Counter()
    for s in sections:
        overall.update(s["status_counts"])
    findings = pd.read_csv(runner.FINDINGS_FILE, dtype=str) if runner.FINDINGS_FILE.exists() else pd.DataFrame()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(
        sections=sections, overall=dict(overall), statuses=STATUS_TEXT, figures=_figures(),
        unmeasured=_unmeasured(sections), findings=findings.to_dict("records"),
        stale=[s["number"] for s in sections if s["state"] == "stale"],
        not_run=[s["number"] for s in sections if s["state"] == "not run"],
    )


def report_file() -> Path:
    return runner.OUTPUT_DIR / "report" / "index.html"


def write() -> Path:
    from runtime.files import write_atomic

    return write_atomic(report_file(), render())
