"""The HTML reproduction report: which of the paper's claims hold, then the evidence (issue #15).

One self-contained page (figures embedded, no network, no script) built with jinja2 from the
suite's outputs, modelled on the ML Reproducibility Challenge's one-page reproducibility summary
(scope, methodology, results):

1. The claims checklist (tables/claims.csv, decided by reproductions/claims.py): one line per claim
   of the paper (reported/claims.csv) with its verdict as a badge, the effect with its interval
   and fidelity, and a link to the table or figure that holds the evidence.
2. The methodology in a paragraph: fidelities, counting convention, what the proxies' pixels are,
   the statistical rule.
3. The count summary: cell statuses per table, and what could not be measured here and why.
4. The figures, the paper's side beside the proxy's (reproductions/proxy_figures.py).
5. Every table in the paper's own shape: one line per paper row (its attributes once), one column
   per metric, the paper's value and the measured one side by side in each cell, the status as the
   cell's colour, notes and findings as numbered footnotes shown once per table.  Proxy cells are
   never coloured by their trend status (a proxy is judged by the claims' statistics, not by a
   single order of means); their seeds are in the cell's hover title.  Below each table: the
   proxy's facts (data, scale, seeds, machine, run time) and learning curves, and the provenance.
   A table with no cell measurable here (Tab. 3, Tab. 5) collapses to one line saying why.

The long-form CSVs in tables/ stay the machine-readable output; this is presentation only.
A table whose stored configuration hash differs from the current code and data is marked stale;
a table never run is listed as such.  Written by run_all.py at the end of every run
(report/index.html).
"""

from __future__ import annotations

import base64
import importlib
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from reproductions import proxy_figures, runner
from reproductions import trained as trained_runs

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TRAINED_FIDELITIES = ("proxy", "full")
VERDICTS = ("supported", "contradicted", "inconclusive", "not run")
# Cell colours of the count and full fidelities (exact comparisons with the paper's value).
STATUS_TEXT = {
    "match": "matches at printed precision",
    "within_tolerance": "within tolerance",
    "off": "off (a recorded finding)",
    "proxy": "proxy: compared through the claims, not cell by cell",
    "measured_only": "measured only: the paper prints no value",
    "not_measured": "not measured here",
    "reported_only": "reported only",
}
# Figures: the paper's side (with this suite's counts) beside the proxy's, and which proxy table
# feeds the proxy side.
FIGURES = (
    {"id": "figure3", "title": "Fig. 3: ImageNet Top-1 against Params and M-Adds",
     "paper": ("figure3_counts.png", "paper: Top-1 as printed; the x positions of hollow diamonds are "
                                     "this suite's counts"),
     "proxy": (proxy_figures.FIGURE3, 9)},
    {"id": "figure-scale-stress", "title": "Figs. 4/10: the scale stress test",
     "paper": ("scale_stress_cost.png", "count (measured): M-Adds per test resolution of the paper's models; "
                                        "the paper's PQ curves are not printed as numbers"),
     "proxy": (proxy_figures.SCALE_STRESS, 2)},
    {"id": "figure-span", "title": "Tab. 7 as a figure: the axial span",
     "paper": ("span_ablation.png", "paper: accuracy as printed; M-Adds paper and count (measured)"),
     "proxy": (proxy_figures.SPAN, 7)},
    {"id": "figure-breakdown", "title": "Where the cost is: M-Adds by operation",
     "paper": ("madds_breakdown.png", "count (measured)"), "proxy": None},
)
# Claims whose evidence is a figure as well as a table.
FIGURE_OF_CLAIM = {"F3": ("figure3", "Fig. 3"), "F4": ("figure-scale-stress", "Figs. 4/10"),
                   "T7-span": ("figure-span", "span figure")}
OTHER_METHOD = re.compile(r"reported only: (.+?) is another paper's method, listed by the paper for comparison")


# --- small helpers ---------------------------------------------------------------------------

def _read_csv(path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None


def _image(name: str) -> dict | None:
    """A figure under figures/ as a data: URI, with its pixel size (so the page lays out before
    the image decodes)."""
    path = runner.FIGURES_DIR / name
    if not path.exists():
        return None
    data = path.read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # PNG IHDR
    return {"name": name, "src": "data:image/png;base64," + base64.b64encode(data).decode(),
            "width": width, "height": height}


def _decimals(printed: str) -> int:
    return len(printed.split(".")[1]) if "." in printed else 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _machine_text(provenance: dict | None) -> str:
    """The machine a table was measured on, in one line (older provenance stored a string)."""
    from runtime import machine

    if not provenance:
        return ""
    stored = provenance.get("machine")
    return stored if isinstance(stored, str) else machine.summary(stored)


def _attributes(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(";") if "=" in part)


def _shown_attribute(value: str) -> str:
    return {"yes": "\u2713", "no": ""}.get(value, value)


class Footnotes:
    """Numbered notes of one table, each text once."""

    def __init__(self):
        self.numbers: dict[str, int] = {}

    def mark(self, text: str) -> int:
        return self.numbers.setdefault(text, len(self.numbers) + 1)

    def listing(self) -> list[dict]:
        return [{"number": n, "text": t} for t, n in self.numbers.items()]


# --- the claims checklist --------------------------------------------------------------------

def claims_checklist() -> list[dict]:
    """One line per claim of reported/claims.csv, with its verdict from tables/claims.csv."""
    from reproductions import claims

    decided = _read_csv(runner.TABLES_DIR / "claims.csv")
    decided = {} if decided is None else {r["claim"]: r for _, r in decided.iterrows()}
    lines = []
    for _, claim in claims.load_claims().iterrows():
        found = decided.get(claim["id"])
        line = {"id": claim["id"], "statement": claim["statement"], "table": claim["table"],
                "verdict": "not run", "effect": "", "interval": "", "resolution": "", "fidelity": "",
                "note": "no verdict in tables/claims.csv yet: `python run_all.py` writes it"}
        if found is not None:
            line.update({k: found[k] for k in ("verdict", "effect", "interval", "resolution", "fidelity", "note")})
            line["statement"] = found["statement"] or line["statement"]
        if line["verdict"] not in VERDICTS:
            line["verdict"] = "inconclusive"
        evidence = [] if claim["table"].startswith("F") else [(f"#table{claim['table']}", f"Tab. {claim['table']}")]
        if claim["table"] == "F4":  # Tab. 2's proxy evaluates its models at the other resolutions
            evidence.append(("#table2", "Tab. 2"))
        for prefix, (anchor, text) in FIGURE_OF_CLAIM.items():
            if claim["id"].startswith(prefix):
                evidence.append((f"#{anchor}", text))
        line["evidence"] = evidence
        line["verdict_class"] = line["verdict"].replace(" ", "")
        lines.append(line)
    return lines


def _claims_of_table(checklist: list[dict], table: int) -> list[dict]:
    return [c for c in checklist if any(anchor == f"#table{table}" for anchor, _ in c["evidence"])]


# --- notes: which part is a footnote, which a hover title ------------------------------------

def _exact_note(note: str) -> tuple[list[str], list[str], str | None]:
    """The note of a cell compared by value (a count, the model zoo) as (footnotes, hover texts, preset)."""
    footnotes, hover = [], []
    preset = None
    match = re.search(r"(?:^|; )preset (\S+?)(?=;|$)", note)
    if match:
        preset = match.group(1)
        note = note[:match.start()] + note[match.end():]
    alternative = re.search(r"(?:^|; )(with 2m-1 keys per local axial query.*)$", note)
    if alternative:
        hover.append(alternative.group(1))
        note = note[:alternative.start()]
    finding = re.search(r"(?:^|; )finding: (.*)$", note)
    if finding:
        footnotes.append("Finding: " + finding.group(1))
        note = note[:finding.start()]
    if "printed as '-' in the paper" in note:
        hover.append("printed as '-' in the paper")
        note = note.replace("printed as '-' in the paper", "")
    note = OTHER_METHOD.sub("another paper's method, listed by the paper for comparison", note)
    rest = note.strip("; ")
    if rest:
        footnotes.insert(0, rest[0].upper() + rest[1:])
    return footnotes, hover, preset


TRAINED_PREFIX = re.compile(r"^(proxy|full): .*?; mean ± std over \d+ seeds")
TRAINED_HOVER = re.compile(r"(order differs from the paper: .*$|the only row measured: no order to compare with the "
                           r"paper's|evaluated at .*?the paper draws it, prints no number\))")


def _trained_note(note: str) -> tuple[list[str], list[str]]:
    """A trained cell's note as (footnotes, hover texts): the experiment's description is in the
    table's proxy facts and the row's title, the trend comparison only on hover."""
    note = TRAINED_PREFIX.sub("", note)
    hover = [m.group(1) for m in TRAINED_HOVER.finditer(note)]
    note = TRAINED_HOVER.sub("", note)
    footnotes = [piece[0].upper() + piece[1:] for piece in (p.strip() for p in note.split("; ")) if piece]
    return footnotes, hover


# --- one table in the paper's shape ----------------------------------------------------------

def _trained_tables(spec) -> dict[str, dict]:
    """{fidelity: {df, provenance, fresh}} of the trained tables on disk."""
    from reproductions import trained

    out = {}
    for fidelity in TRAINED_FIDELITIES:
        stem = trained.output_stem(spec, fidelity)
        df = _read_csv(runner.TABLES_DIR / f"{stem}.csv")
        if df is None:
            continue
        provenance = runner.load_provenance(runner.TABLES_DIR / f"{stem}.provenance.json") or {}
        out[fidelity] = {"df": df, "provenance": provenance,
                         "fresh": provenance.get("config_hash") == trained.fingerprint(spec)}
    return out


def _exact_entry(line) -> dict:
    """A value compared with the paper's as a value: a count, or a full-fidelity evaluation."""
    measured = float(line["measured"])
    text = f"{measured:.{_decimals(line['reported']) + 1 if line['reported'] else 2}f}"
    title = f"{line['fidelity']}: {measured:.4f} {line['unit']}"
    if line["rel_delta"]:
        title += f", {100 * float(line['rel_delta']):+.2f} % against the paper"
    return {"fidelity": line["fidelity"], "text": text, "title": title}


def _trained_entry(line, fidelity: str) -> dict:
    mean, std = float(line["measured"]), float(line["std"] or 0)
    digits = 1 if abs(mean) >= 10 else 2
    seeds = proxy_figures.seed_values(line)
    title = f"{fidelity}, mean ± std over seeds {line['seeds']}"
    if seeds:
        title += ": " + ", ".join(f"{v:.{digits + 1}f}" for v in seeds)
    return {"fidelity": fidelity, "text": f"{mean:.{digits}f} ± {std:.{digits}f}", "title": title}


def _paper_table(n: int, checklist: list[dict]) -> dict:
    spec = importlib.import_module(f"reproductions.table{n}").SPEC
    reported = runner.load_reported(n)
    count = _read_csv(runner.TABLES_DIR / f"table{n}.csv")
    provenance = runner.load_provenance(runner.TABLES_DIR / f"table{n}.provenance.json")
    trained_tables = _trained_tables(spec)
    section = {"number": n, "title": spec.title, "state": "not run", "stale_reason": "", "provenance": provenance,
               "machine": _machine_text(provenance), "claims": _claims_of_table(checklist, n)}
    if count is not None:
        current = runner.table_fingerprint(spec)
        if provenance is None:
            section.update(state="stale", stale_reason="no provenance file: produced by an older version of the suite")
        elif provenance.get("config_hash") != current:
            section.update(state="stale", stale_reason=(
                f"produced with configuration {provenance.get('config_hash')}; the current code and data give "
                f"{current}: re-run `python run_all.py --tables {n}`"))
        else:
            section["state"] = "fresh"
    section.update(_shape(reported, count, trained_tables))
    cells = [c for r in section["rows"] for c in r["cells"] if not c["empty"]]
    section.update(
        collapsed=not any(c["entries"] or c["status"] != "reported_only" for c in cells),
        trained=[_trained_block(n, fidelity, t, reported.drop_duplicates("row"))
                 for fidelity, t in trained_tables.items()],
        status_counts=Counter(c["status"] for c in cells),
        errors={m: f"{100 * e:.2f} %" for m in ("Params", "M-Adds")
                if count is not None and (e := runner.mean_abs_rel_error(count, m)) is not None},
    )
    section["collapsed_reason"] = "; ".join(
        f"{f['text'][0].lower() + f['text'][1:]} ({_rows_marked(section['rows'], f['number'])} rows)"
        for f in section["footnotes"]) if section["collapsed"] else ""
    return section


def _shape(reported: pd.DataFrame, exact: pd.DataFrame | None, trained_tables: dict) -> dict:
    """The paper's table: a line per paper row with its attributes, a column per metric, in each
    cell the paper's value and the measured ones; `exact` holds the long-form lines compared by
    value (count, or a full-fidelity table such as the model zoo's), `trained_tables` the proxy
    and full runs."""
    lines = {f: {(r["row"], r["metric"]): r for _, r in t["df"].iterrows()} for f, t in trained_tables.items()}
    exact_lines = {} if exact is None else {(r["row"], r["metric"]): r for _, r in exact.iterrows()}
    printed_values = {(r.row, r.metric): r.value for r in reported.itertuples()}
    metrics = list(dict.fromkeys(reported["metric"]))
    units = reported.drop_duplicates("metric").set_index("metric")["unit"].to_dict()
    paper_rows = reported.drop_duplicates("row")
    attribute_keys = list(dict.fromkeys(k for a in paper_rows["attributes"] for k in _attributes(a)))
    notes = Footnotes()
    rows, column_fidelities = [], {m: [] for m in metrics}
    for _, paper_row in paper_rows.iterrows():
        row = paper_row["row"]
        cells, presets = [], []
        for metric in metrics:
            if (row, metric) not in printed_values:
                cells.append({"empty": True, "metric": metric})
                continue
            cell, preset = _cell(printed_values[row, metric], exact_lines.get((row, metric)),
                                 {f: lines[f].get((row, metric)) for f in lines}, notes)
            cells.append(dict(cell, metric=metric))
            presets += [preset] if preset and preset not in presets else []
            column_fidelities[metric] += [e["fidelity"] for e in cell["entries"]
                                          if e["fidelity"] not in column_fidelities[metric]]
        filled = [c for c in cells if not c["empty"]]
        # A note on every cell of a row (e.g. "another paper's method") is the row's: shown once, on its label.
        row_marks = [m for m in (filled[0]["marks"] if filled else []) if all(m in c["marks"] for c in filled)]
        if len(filled) > 1:
            for c in filled:
                c["marks"] = [m for m in c["marks"] if m not in row_marks]
        else:
            row_marks = []
        attributes = _attributes(paper_row["attributes"])
        rows.append({"row": row, "label": paper_row["label"], "marks": row_marks,
                     "attributes": [_shown_attribute(attributes.get(k, "")) for k in attribute_keys],
                     "title": "; ".join(_row_hover(row, trained_tables) + [f"preset {p}" for p in presets]),
                     "cells": cells})
    column_marks = _column_marks(rows, metrics)
    return {"rows": rows, "footnotes": notes.listing(), "attribute_keys": attribute_keys,
            "metrics": [{"name": m, "unit": units.get(m, ""), "fidelities": column_fidelities[m],
                         "marks": column_marks[m]} for m in metrics]}


def _cell(printed: str, exact_line, trained_lines: dict, notes: Footnotes) -> tuple[dict, str | None]:
    """One cell: the paper's value, the measured entries, the status colour, footnote marks and a
    hover title; and the preset the exact line names."""
    entries, titles, exact_footnotes, trained_footnotes, preset = [], [], [], [], None
    status = "not_measured"
    if exact_line is not None:
        status = exact_line["status"]
        if exact_line["measured"]:
            entries.append(_exact_entry(exact_line))
        exact_footnotes, hover, preset = _exact_note(exact_line["note"])
        titles += hover
    for fidelity, line in trained_lines.items():
        if line is None:
            continue
        footnotes, hover = _trained_note(line["note"])
        trained_footnotes += footnotes
        titles += hover
        if line["measured"]:
            entries.append(_trained_entry(line, fidelity))
            status = line["status"] if fidelity == "full" else "proxy"
    if entries and exact_line is not None and exact_line["status"] == "not_measured":
        exact_footnotes = []  # why counting cannot measure it: answered by a trained fidelity
    status = status if status in STATUS_TEXT else "not_measured"
    return {"empty": False, "reported": printed or "\u2013", "entries": entries, "status": status,
            "marks": [notes.mark(f) for f in exact_footnotes + trained_footnotes],
            "title": "; ".join([STATUS_TEXT[status]] + titles)}, preset


def _row_hover(row: str, trained_tables: dict) -> list[str]:
    """A row's id, and per trained fidelity its experiment and each seed's run time."""
    hover = [f"row id {row}"]
    for fidelity, t in trained_tables.items():
        described = t["provenance"].get("experiments", {}).get(row)
        if described:
            hover.append(f"{fidelity}: {described}")
        runs = t["provenance"].get("seed_runs", {}).get(row)
        if runs:
            hover.append(f"{fidelity} run time: " + ", ".join(
                f"seed {r.get('seed')} {_duration(r.get('seconds'))}" for r in runs))
    return hover


def _model_zoo() -> dict | None:
    """deeplab2's model zoo on Cityscapes val (tables/model_zoo.full.csv), the part of Tab. 5's
    subject this suite can measure (released checkpoints, full fidelity); None if never run."""
    from reproductions import model_zoo

    measured = _read_csv(runner.TABLES_DIR / f"{model_zoo.STEM}.csv")
    if measured is None:
        return None
    section = {"number": "zoo", **_shape(model_zoo.load_reported(), measured, {})}
    section["status_counts"] = Counter(c["status"] for r in section["rows"] for c in r["cells"] if not c["empty"])
    return section


def _column_marks(rows: list[dict], metrics: list[str]) -> dict[str, list[int]]:
    """Footnotes on every cell of a column (e.g. "accuracy: needs the proxy or full fidelity"),
    moved to the column's heading.  Rows reported only carry their own reason and are left out."""
    out = {}
    for i, metric in enumerate(metrics):
        cells = [r["cells"][i] for r in rows if not r["cells"][i]["empty"] and r["cells"][i]["status"] != "reported_only"]
        shared = [m for m in (cells[0]["marks"] if cells else []) if all(m in c["marks"] for c in cells)]
        out[metric] = shared if len(cells) > 1 else []
        for c in cells if len(cells) > 1 else []:
            c["marks"] = [m for m in c["marks"] if m not in shared]
    return out


def _rows_marked(rows: list[dict], number: int) -> int:
    """How many rows carry footnote `number`, on their label or on a cell."""
    return sum(number in r["marks"] or any(number in c.get("marks", []) for c in r["cells"]) for r in rows)


SHORT_STATUS = {"match": "match", "within_tolerance": "within tol.", "off": "off", "proxy": "proxy",
                "measured_only": "measured only", "not_measured": "not measured", "reported_only": "reported only"}


# --- a trained table's facts ---------------------------------------------------------------

def _common_description(descriptions: list[str]) -> str:
    """What every row's experiment shares (data, input, recipe): the common tail of their
    descriptions, from a ", " boundary; the model part before it is each row's own."""
    if not descriptions:
        return ""
    tail = descriptions[0]
    for text in descriptions[1:]:
        while not text.endswith(tail):
            tail = tail[1:]
    start = len(descriptions[0]) - len(tail)
    if start == 0 or descriptions[0][start - 2:start] != ", ":
        cut = tail.find(", ")
        tail = tail[cut + 2:] if cut >= 0 else ""
    return tail


def _trained_block(n: int, fidelity: str, trained: dict, paper_rows: pd.DataFrame) -> dict:
    df, provenance = trained["df"], trained["provenance"]
    everything = [r for row_runs in provenance.get("seed_runs", {}).values() for r in row_runs]
    runs = trained_runs.distinct_runs(everything)
    # Seeds read from another table's trainings: that table's time, not this one's.
    read = Counter(str(r["shared_from"]) for r in runs if r.get("shared_from"))
    own = trained_runs.trained_here(everything)
    seconds = [r["seconds"] for r in own if r.get("seconds") is not None]
    machines = Counter(r.get("machine") for r in runs if r.get("machine"))
    if not machines and _machine_text(provenance):
        machines[_machine_text(provenance)] = len(runs) or 1
    trends = []
    for metric, t in (provenance.get("trends") or {}).items():
        cells = df[df["metric"] == metric]
        within = sum(note.count("(within seed noise)") for note in cells["note"]) // 2
        tau = "n/a" if t.get("kendall_tau") is None else f"{t['kendall_tau']:+.2f}"
        trends.append(f"{metric} {tau} over {t.get('rows')} rows, {t.get('disagreeing_pairs')} pair(s) reversed "
                      f"({within} within seed noise)")
    previous = provenance.get("previous_run")
    labels = paper_rows.set_index("row")["label"].to_dict()
    return {
        "fidelity": fidelity, "state": "fresh" if trained["fresh"] else "stale",
        "data": _common_description(list(provenance.get("experiments", {}).values())),
        "scale": provenance.get("proxy_scale") or "", "seeds": ", ".join(map(str, provenance.get("seeds", []))),
        "runs": len(runs), "training": _duration(provenance.get("training_seconds")),
        "per_run": f"{_duration(min(seconds))}\u2013{_duration(max(seconds))}" if seconds else "",
        "train_only": _duration(sum(r["train_seconds"] for r in own if r.get("train_seconds") is not None))
        if any(r.get("train_seconds") is not None for r in own) else "",
        "read": ", ".join(f"{k} read from Tab. {table}'s trainings" for table, k in sorted(read.items())),
        "machines": [f"{m} ({k} runs)" if len(machines) > 1 else m for m, k in machines.items()],
        "commit": provenance.get("commit", ""), "date": provenance.get("date", ""), "trends": trends,
        "previous": previous and {"machine": previous.get("machine"), "date": previous.get("date"),
                                  "within": sum(c["within_seed_noise"] for c in previous.get("comparison", [])),
                                  "cells": len(previous.get("comparison", []))},
        "curves": _image(proxy_figures.curves_name(n)) if fidelity == "proxy" else None,
        "has_curves": any(any(s.values()) for s in provenance.get("curves", {}).values()),
        "measured_only": _measured_only(df, labels),
    }


def _measured_only(df: pd.DataFrame, labels: dict) -> dict | None:
    """Cells the paper draws but prints no number for (metric@ratio: the scale stress test), as
    one small table: a line per (row, metric), a column per test ratio (1 = the paper's metric)."""
    extra = df[df["metric"].str.contains("@", regex=False) & (df["measured"] != "")]
    if extra.empty:
        return None
    ratios = sorted({float(m.split("@")[1]) for m in extra["metric"]} | {1.0})
    lines = []
    for (row, metric), _ in extra.assign(base=extra["metric"].str.split("@").str[0]).groupby(["row", "base"], sort=False):
        cells = []
        for ratio in ratios:
            name = metric if ratio == 1.0 else f"{metric}@{ratio:g}"
            found = df[(df["row"] == row) & (df["metric"] == name) & (df["measured"] != "")]
            cells.append(_trained_entry(found.iloc[0], "proxy") if not found.empty else None)
        lines.append({"label": labels.get(row, row), "metric": metric, "cells": cells})
    return {"ratios": [f"{r:g}" for r in ratios], "lines": lines}


# --- summary ---------------------------------------------------------------------------------

def _unmeasured(sections: list[dict]) -> list[dict]:
    """Why cells have no measured value here, grouped by reason (footnote text)."""
    reasons: Counter = Counter()
    for s in sections:
        texts = {number: text for text, number in ((f["text"], f["number"]) for f in s["footnotes"])}
        for r in s["rows"]:
            for c in r["cells"]:
                if c["empty"] or c["entries"] or c["status"] not in ("not_measured", "reported_only"):
                    continue
                marks = (r["marks"] + c["marks"]) or [None]
                reason = next((texts[m] for m in marks if m and not texts[m].startswith("Finding")), "")
                reasons[(STATUS_TEXT[c["status"]], reason or STATUS_TEXT[c["status"]])] += 1
    return [{"status": k[0], "reason": k[1], "cells": v} for k, v in reasons.most_common()]


def _figures() -> list[dict]:
    out = []
    for figure in FIGURES:
        entry = {"id": figure["id"], "title": figure["title"], "paper": _image(figure["paper"][0]),
                 "paper_caption": figure["paper"][1], "proxy": None, "proxy_table": None}
        if figure["proxy"]:
            name, table = figure["proxy"]
            entry["proxy_table"] = table
            ran = (runner.TABLES_DIR / f"table{table}.proxy.csv").exists()
            entry["proxy"] = _image(name) if ran else None
            entry["proxy_state"] = "drawn" if entry["proxy"] else ("not drawn" if ran else "not run")
        out.append(entry)
    return out


def render() -> str:
    import jinja2

    from reproductions import claims
    from training.experiments import PROXY_WIDTH

    checklist = claims_checklist()
    sections = [_paper_table(n, checklist) for n in range(1, 10)]
    overall = Counter()
    for s in sections:
        overall.update(s["status_counts"])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(
        claims=checklist, verdict_counts=Counter(c["verdict"] for c in checklist), verdicts=VERDICTS,
        sections=sections, model_zoo=_model_zoo(), overall=dict(overall), statuses=STATUS_TEXT, short_statuses=SHORT_STATUS, figures=_figures(),
        unmeasured=_unmeasured(sections), alpha=claims.ALPHA, proxy_width=f"{PROXY_WIDTH:g}",
        stale=[s["number"] for s in sections if s["state"] == "stale"],
        not_run=[s["number"] for s in sections if s["state"] == "not run"],
        design=_proxy_design(),
    )


def _proxy_design() -> dict | None:
    """The panoptic proxy's pilot and design (reproductions/pilot.py), if written."""
    path = runner.TABLES_DIR / "proxy_design.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def report_file():
    return runner.OUTPUT_DIR / "report" / "index.html"


def write():
    """Draw the proxy figures from tables/, then write report/index.html."""
    from runtime.files import write_atomic

    proxy_figures.draw_all()
    return write_atomic(report_file(), render())
