"""The shared machinery every reproduction uses: measure, compare with the paper, write.

A reproduction script only declares a `TableSpec`: which paper rows exist, which
preset measures each, and why a row has no model.  This module

- reads the paper's numbers from reported/table<N>.csv (data, never code);
- measures counts (fidelity "count") with models/counting.py, cached on disk
  under .cache/counts/ keyed by the preset, the model code and the library
  versions, so re-runs are instant and a model change is never served stale;
- compares each cell with the paper (status per cell, see `cell_status`);
- writes tables/table<N>.csv (long form) and tables/table<N>.md atomically.

Statuses: match (rounds to the printed value), within_tolerance (M-Adds within
2 %), off (outside: a finding if recorded in reproductions/findings.csv, which
also explains within-tolerance gaps),
not_measured (a metric this fidelity cannot measure), reported_only (a paper
row with no model in this suite; the note says why).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REPORTED_DIR = ROOT / "reported"
TABLES_DIR = ROOT / "tables"
FIGURES_DIR = ROOT / "figures"
CACHE_DIR = ROOT / ".cache" / "counts"
GOLDEN_FILE = ROOT / "reproductions" / "golden_counts.json"
FINDINGS_FILE = ROOT / "reproductions" / "findings.csv"

FIDELITIES = ("count", "proxy", "full")
COUNT_METRICS = {"Params", "M-Adds"}
UNIT_SCALE = {"M": 1e6, "B": 1e9, "T": 1e12}
# Relative tolerance of M-Adds cells against the paper (issue acceptance: 2 %).
# Params cells must round to the printed value.
MADDS_TOLERANCE = 0.02
COLUMNS = ["table", "row", "metric", "unit", "reported", "measured", "fidelity", "delta",
           "rel_delta", "status", "note"]


def other_method(model: str, why: str = "") -> str:
    """Reason text for a paper row this suite lists but does not build."""
    text = f"reported only: {model} is another paper's method, listed by the paper for comparison"
    return f"{text}; {why}" if why else text


class ReproductionError(RuntimeError):
    """A problem the user must fix (bad input, missing file); printed as one line."""


@dataclass(frozen=True)
class Row:
    """One paper row: the preset that measures it, or why there is none."""

    row: str
    preset: str | None = None
    reason: str = ""

    def __post_init__(self):
        if (self.preset is None) == (not self.reason):
            raise ValueError(f"row {self.row!r}: give a preset or a reason, not both or neither")


@dataclass(frozen=True)
class TableSpec:
    """What a reproduction measures for one paper table."""

    table: int
    title: str
    rows: tuple[Row, ...]
    fidelities: tuple[str, ...] = ("count",)
    # Metrics of the paper's table that count fidelity cannot measure get this note.
    not_measured_note: str = "accuracy: needs the proxy or full fidelity (not run)"
    extra_notes: dict = field(default_factory=dict)
    # Training fidelities: (row id, training.experiments.Experiment) pairs, run by
    # reproductions/trained.py.  Empty: this table declares no experiment at that fidelity.
    proxy: tuple = ()
    full: tuple = ()

    @property
    def presets(self) -> list[str]:
        return [r.preset for r in self.rows if r.preset]


# --- the paper's numbers ---------------------------------------------------------------------

def load_reported(table: int) -> pd.DataFrame:
    path = REPORTED_DIR / f"table{table}.csv"
    if not path.exists():
        raise ReproductionError(f"missing reported numbers: {path.relative_to(ROOT)}")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def finding_for(findings: dict, table: int, row: str, metric: str, status: str) -> str | None:
    """The recorded explanation of a cell's gap: its own entry, or for a cell within
    tolerance the table's entry for that metric with row "*"."""
    if status == "off":
        return findings.get((table, row, metric))
    if status == "within_tolerance":
        return findings.get((table, row, metric)) or findings.get((table, "*", metric))
    return None


def load_findings() -> dict[tuple[int, str, str], str]:
    if not FINDINGS_FILE.exists():
        return {}
    with FINDINGS_FILE.open(newline="") as f:
        return {(int(r["table"]), r["row"], r["metric"]): r["finding"] for r in csv.DictReader(f)}


# --- measuring ------------------------------------------------------------------------------

def _code_fingerprint() -> str:
    """Hash of the model code and library versions: any change invalidates cached counts."""
    import keras
    import tensorflow as tf

    digest = hashlib.sha256(f"keras={keras.__version__};tf={tf.__version__}".encode())
    for path in sorted((ROOT / "models").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


_FINGERPRINT: str | None = None


def _fingerprint() -> str:
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = _code_fingerprint()
    return _FINGERPRINT


def _cache_file(model_spec, size) -> Path:
    # Keyed by what is counted (the model spec and the input size), not by preset name,
    # so presets, multi-scale passes and the scale stress test share counts.
    key = hashlib.sha256(f"{model_spec!r}|{tuple(size)}|{_fingerprint()}".encode()).hexdigest()[:24]
    return CACHE_DIR / f"{type(model_spec).__name__}-{tuple(size)[0]}x{tuple(size)[1]}-{key}.json"


def count_at(model_spec, size):
    """One forward pass's counts, from the cache or computed and cached."""
    from models import counting

    path = _cache_file(model_spec, size)
    if path.exists():
        return counting.Counts.from_dict(json.loads(path.read_text()))
    counts = counting.count_model(model_spec, size)
    write_atomic(path, json.dumps(counts.to_dict(), indent=1))
    return counts


def _count_in_worker(model_spec, size) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    count_at(model_spec, size)


def _resolve(preset):
    from models import presets

    return presets.get(preset) if isinstance(preset, str) else preset


def prefetch(jobs: list[tuple], progress: bool = True, label: str = "counting") -> None:
    """Counts every uncached (model spec, size) pass, in parallel on the machine's cores."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import multiprocessing

    from tqdm import tqdm

    todo = list({_cache_file(m, s): (m, tuple(s)) for m, s in jobs if not _cache_file(m, s).exists()}.values())
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=label, unit="pass", file=sys.stderr,
               disable=True if not progress else None)  # None: a bar on terminals only
    workers = min(len(todo), os.cpu_count() or 1)
    if workers == 1:
        for model_spec, size in todo:
            count_at(model_spec, size)
            bar.update()
    else:
        # TensorFlow is not fork-safe: fresh interpreters, each counting its share.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_count_in_worker, m, s) for m, s in todo]):
                future.result()
                bar.update()
    bar.close()


def measure_counts(preset, input_size=None) -> dict:
    """Counts of a preset (a name or a Preset) at its paper input size, over every pass of
    a multi-scale preset, or at `input_size`; cached per pass."""
    from models import counting

    preset = _resolve(preset)
    result = counting.count_preset(preset, input_size, count_at=count_at).to_dict()
    result["input_size"] = list(input_size or preset.input_size)
    result["passes"] = 1 if input_size else len(preset.inference_runs())
    return result


def measure_all(presets_needed: list, progress: bool = True) -> dict[str, dict]:
    resolved = {p.name: p for p in map(_resolve, presets_needed)}
    prefetch([(p.model, size) for p in resolved.values() for size in p.inference_runs()], progress)
    return {name: measure_counts(p) for name, p in resolved.items()}


# --- comparing ------------------------------------------------------------------------------

def decimals(printed: str) -> int:
    return len(printed.split(".")[1]) if "." in printed else 0


def rounds_to(measured: float, printed: str) -> bool:
    quantum = Decimal(1).scaleb(-decimals(printed))
    return Decimal(repr(measured)).quantize(quantum, rounding=ROUND_HALF_UP) == Decimal(printed)


def cell_status(metric: str, printed: str, measured: float) -> str:
    if rounds_to(measured, printed):
        return "match"
    rel = abs(measured - float(printed)) / float(printed)
    if metric == "M-Adds" and rel <= MADDS_TOLERANCE:
        return "within_tolerance"
    return "off"


def in_unit(counts: dict, metric: str, unit: str) -> float:
    value = counts["params"] if metric == "Params" else counts["madds"]
    return value / UNIT_SCALE[unit]


def build_table(spec: TableSpec, fidelity: str, counts: dict[str, dict]) -> pd.DataFrame:
    """Long-form table: one line per paper row and metric."""
    reported = load_reported(spec.table)
    rows = {r.row: r for r in spec.rows}
    unknown = set(rows) - set(reported["row"])
    if unknown:
        raise ReproductionError(f"table {spec.table}: rows not in the paper's table: {sorted(unknown)}")
    findings = load_findings()
    out = []
    for _, cell in reported.iterrows():
        row = rows.get(cell["row"])
        line = {"table": spec.table, "row": cell["row"], "metric": cell["metric"],
                "unit": cell["unit"], "reported": cell["value"], "measured": "",
                "fidelity": fidelity, "delta": "", "rel_delta": "", "status": "", "note": cell["note"]}
        notes = [cell["note"]] if cell["note"] else []
        if row is None or row.preset is None:
            line["status"] = "reported_only"
            notes.append(row.reason if row else "no model for this row in the suite yet")
        elif cell["metric"] not in COUNT_METRICS or fidelity != "count":
            line["status"] = "not_measured"
            notes.append(spec.not_measured_note)
        elif cell["value"] == "":
            line["status"] = "not_measured"
        else:
            measured = in_unit(counts[row.preset], cell["metric"], cell["unit"])
            printed = cell["value"]
            line["measured"] = f"{measured:.4f}"
            line["delta"] = f"{measured - float(printed):+.4f}"
            line["rel_delta"] = f"{(measured - float(printed)) / float(printed):+.4f}"
            line["status"] = cell_status(cell["metric"], printed, measured)
            notes.append(f"preset {row.preset}")
            finding = finding_for(findings, spec.table, cell["row"], cell["metric"], line["status"])
            if finding:
                notes.append(f"finding: {finding}")
            c = counts[row.preset]
            if cell["metric"] == "M-Adds" and c["madds_blocked_local"] != c["madds"]:
                alt = c["madds_blocked_local"] / UNIT_SCALE[cell["unit"]]
                notes.append(f"with 2m-1 keys per local axial query (blocked local attention) it "
                             f"would be {alt:.2f} {cell['unit']}")
        line["note"] = "; ".join(n for n in notes if n)
        out.append(line)
    return pd.DataFrame(out, columns=COLUMNS)


def mean_abs_rel_error(df: pd.DataFrame, metric: str) -> float | None:
    cells = df[(df["metric"] == metric) & (df["rel_delta"] != "")]
    if cells.empty:
        return None
    return float(cells["rel_delta"].astype(float).abs().mean())


# --- writing --------------------------------------------------------------------------------

def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure under figures/ atomically (a half-written PNG never replaces one)."""
    import matplotlib.pyplot as plt

    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / name
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)
    return path


def to_markdown(df: pd.DataFrame, spec: TableSpec) -> str:
    lines = [f"# Table {spec.table}: {spec.title}", "",
             f"Fidelity: {', '.join(sorted(set(df['fidelity'])))}. "
             "Reported = the paper's printed value; measured = this suite's code. "
             "Generated by `python run_all.py`; do not edit.", ""]
    for metric in ("Params", "M-Adds"):
        err = mean_abs_rel_error(df, metric)
        if err is not None:
            lines.append(f"- Mean absolute relative error, {metric}: {100 * err:.2f} %")
    counts = df["status"].value_counts()
    lines.append("- Cells by status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines += ["", "| " + " | ".join(COLUMNS[1:]) + " |", "|" + "---|" * (len(COLUMNS) - 1)]
    for _, r in df.iterrows():
        cells = [str(r[c]).replace("|", "\\|") for c in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def breakdown_frame(counts: dict[str, dict]) -> pd.DataFrame:
    """Per preset: Params by op, M-Adds by op and by stage (long form), for readers and plots."""
    records = []
    for preset, c in counts.items():
        for quantity, key in (("params", "params_by_op"), ("madds", "madds_by_op"),
                              ("madds", "madds_by_stage")):
            for part, value in c[key].items():
                records.append({"preset": preset, "quantity": quantity,
                                "by": key.split("_by_")[1], "part": part, "value": value,
                                "in_total": not (quantity == "params" and part == "attention_batch_norm")})
    return pd.DataFrame(records, columns=["preset", "quantity", "by", "part", "value", "in_total"])


def write_table(df: pd.DataFrame, spec: TableSpec, counts: dict[str, dict] | None = None) -> list[Path]:
    csv_path = TABLES_DIR / f"table{spec.table}.csv"
    md_path = TABLES_DIR / f"table{spec.table}.md"
    write_atomic(csv_path, df.to_csv(index=False))
    write_atomic(md_path, to_markdown(df, spec))
    written = [csv_path, md_path]
    if counts:
        breakdown_path = TABLES_DIR / f"table{spec.table}_breakdown.csv"
        write_atomic(breakdown_path, breakdown_frame(counts).to_csv(index=False))
        written.append(breakdown_path)
    return written


def table_fingerprint(spec: TableSpec) -> str:
    """Hash of everything a table's numbers depend on: its declaration, its presets' model
    specs and input sizes, the model code, and the paper's numbers.  The report marks a
    table stale when its stored fingerprint differs from the current one."""
    from models import presets

    digest = hashlib.sha256(repr(spec).encode())
    for name in spec.presets:
        p = presets.get(name)
        digest.update(repr((p.model, p.input_size, p.inference_scales, p.flip)).encode())
    digest.update(_fingerprint().encode())
    for path in (REPORTED_DIR / f"table{spec.table}.csv", FINDINGS_FILE):
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def provenance(spec: TableSpec, fidelity: str, seeds: tuple = (), config_hash: str | None = None) -> dict:
    """Where a table's numbers come from: code, configuration, libraries, machine, date.
    `config_hash` defaults to the count tables' `table_fingerprint`."""
    import datetime
    import platform
    import subprocess

    import keras
    import numpy as np
    import tensorflow as tf

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "models", "reproductions", "reported"):
        commit += "+uncommitted changes"
    return {
        "table": spec.table,
        "fidelity": fidelity,
        "config_hash": config_hash or table_fingerprint(spec),
        "commit": commit,
        "seeds": list(seeds),
        "libraries": {"python": platform.python_version(), "tensorflow": tf.__version__,
                      "keras": keras.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_table(spec: TableSpec, fidelity: str = "count", progress: bool = True) -> pd.DataFrame:
    """Measure, compare and write one table; returns the long-form frame."""
    if fidelity not in spec.fidelities:
        raise ReproductionError(
            f"table {spec.table} supports fidelity {', '.join(spec.fidelities)} so far, not {fidelity!r}"
        )
    counts = measure_all(spec.presets, progress=progress)
    df = build_table(spec, fidelity, counts)
    write_table(df, spec, counts)
    write_atomic(TABLES_DIR / f"table{spec.table}.provenance.json",
                 json.dumps(provenance(spec, fidelity), indent=1) + "\n")
    return df


# --- checking -------------------------------------------------------------------------------

def load_golden() -> dict[str, dict]:
    return json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}


def update_golden(counts: dict[str, dict]) -> None:
    golden = load_golden()
    for name, c in counts.items():
        golden[name] = {"params": c["params"], "madds": c["madds"]}
    write_atomic(GOLDEN_FILE, json.dumps(dict(sorted(golden.items())), indent=1) + "\n")


def check(tables: dict[int, pd.DataFrame], counts: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(failures, known findings) of the CI comparison of counts."""
    failures, known = [], []
    golden = load_golden()
    for name, c in sorted(counts.items()):
        g = golden.get(name)
        if g is None:
            failures.append(f"preset {name}: no golden counts (run `python run_all.py --update-golden`)")
        elif (g["params"], g["madds"]) != (c["params"], c["madds"]):
            failures.append(
                f"preset {name}: counts changed: params {g['params']} -> {c['params']}, "
                f"M-Adds {g['madds']} -> {c['madds']} (update the golden file on purpose, "
                "in the commit that changes the model)"
            )
    findings = load_findings()
    for (table, row, metric) in findings:
        if row == "*" and table in tables:
            df = tables[table]
            if not ((df["metric"] == metric) & (df["status"] == "within_tolerance")).any():
                failures.append(f"table {table} / * / {metric}: recorded finding explains no cell "
                                "within tolerance any more; remove it from reproductions/findings.csv")
    for table, df in sorted(tables.items()):
        for _, r in df.iterrows():
            key = (table, r["row"], r["metric"])
            cell = f"table {table} / {r['row']} / {r['metric']}"
            if r["status"] == "off":
                detail = f"measured {r['measured']} {r['unit']} vs paper {r['reported']} ({r['rel_delta']})"
                if key in findings:
                    known.append(f"{cell}: {detail}")
                else:
                    failures.append(f"{cell}: outside tolerance and not a recorded finding: {detail}")
            elif key in findings and r["status"] == "match":
                # A finding explains a gap; on a cell that now matches it is stale.
                failures.append(f"{cell}: recorded as a finding but now {r['status']}; "
                                "remove it from reproductions/findings.csv")
    return failures, known
