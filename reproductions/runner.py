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
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd

from runtime.files import CACHE_ROOT, write_atomic, write_if_changed, write_set
from runtime.machine import library_versions

ROOT = Path(__file__).resolve().parent.parent
REPORTED_DIR = ROOT / "reported"
# Outputs (tables/, figures/, report/) live in the repository unless `--output-dir` (or the
# AXIAL_DEEPLAB_OUTPUT_DIR environment variable, which the tests set) names another folder.
OUTPUT_DIR = Path(os.environ.get("AXIAL_DEEPLAB_OUTPUT_DIR") or ROOT)
TABLES_DIR = OUTPUT_DIR / "tables"
FIGURES_DIR = OUTPUT_DIR / "figures"
CACHE_DIR = CACHE_ROOT / "counts"
GOLDEN_FILE = ROOT / "reproductions" / "golden_counts.json"
FINDINGS_FILE = ROOT / "reproductions" / "findings.csv"

FIDELITIES = ("count", "proxy", "full")
# One reproduction module per paper table (run_all.py keeps its own copy, to start without pandas).
TABLE_MODULES = {n: f"reproductions.table{n}" for n in range(1, 10)}
COUNT_METRICS = {"Params", "M-Adds"}
UNIT_SCALE = {"M": 1e6, "B": 1e9, "T": 1e12}
# Relative tolerance of M-Adds cells against the paper (issue acceptance: 2 %).
# Params cells must round to the printed value.
MADDS_TOLERANCE = 0.02
COLUMNS = ["table", "row", "metric", "unit", "reported", "measured", "fidelity", "delta",
           "rel_delta", "status", "note"]


def use_output_dir(path: str | Path) -> None:
    """Write tables/, figures/ and report/ under `path` from now on (here and in workers)."""
    global OUTPUT_DIR, TABLES_DIR, FIGURES_DIR
    OUTPUT_DIR = Path(path).resolve()
    TABLES_DIR, FIGURES_DIR = OUTPUT_DIR / "tables", OUTPUT_DIR / "figures"
    os.environ["AXIAL_DEEPLAB_OUTPUT_DIR"] = str(OUTPUT_DIR)


def shown(path: Path) -> str:
    """A path as printed: relative to the repository when inside it."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


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


@dataclass(frozen=True)
class Finding:
    """A recorded explanation of a cell's gap.  `direction` (above, below or either) is which
    side of the paper the explained cells lie on; the CI check verifies it against each cell,
    so a finding's text cannot say "above" of a cell that is below."""

    text: str
    direction: str


FINDING_DIRECTIONS = ("above", "below", "either")


def finding_for(findings: dict, table: int, row: str, metric: str, status: str) -> Finding | None:
    """The recorded explanation of a cell's gap: its own entry, or for a cell within
    tolerance the table's entry for that metric with row "*"."""
    if status == "off":
        return findings.get((table, row, metric))
    if status == "within_tolerance":
        return findings.get((table, row, metric)) or findings.get((table, "*", metric))
    return None


def load_findings() -> dict[tuple[int, str, str], Finding]:
    if not FINDINGS_FILE.exists():
        return {}
    with FINDINGS_FILE.open(newline="") as f:
        findings = {}
        for r in csv.DictReader(f):
            if r["direction"] not in FINDING_DIRECTIONS:
                raise ReproductionError(f"{FINDINGS_FILE.name}: direction {r['direction']!r} of "
                                        f"{r['table']}/{r['row']}/{r['metric']} is not one of {FINDING_DIRECTIONS}")
            findings[int(r["table"]), r["row"], r["metric"]] = Finding(r["finding"], r["direction"])
        return findings


def side_of_paper(rel_delta: str) -> str:
    value = float(rel_delta)
    return "above" if value > 0 else "below" if value < 0 else "equal"


# --- measuring ------------------------------------------------------------------------------

def _code_fingerprint() -> str:
    """Hash of the model code and the Keras version: any change invalidates cached counts
    (counts are symbolic shapes, the same on every backend)."""
    digest = hashlib.sha256(f"keras={library_versions('keras')['keras']}".encode())
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
        cached = read_cached_counts(path)
        if cached is not None:
            return cached
        print(f"damaged count cache {shown(path)}: counting again", file=sys.stderr)
    counts = counting.count_model(model_spec, size)
    payload = counts.to_dict()
    write_atomic(path, json.dumps({"counts": payload, "sha256": _checksum(payload)}, indent=1))
    return counts


def _checksum(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_cached_counts(path: Path):
    """A cached pass's counts, or None when the entry cannot be trusted: cut short, not JSON, not
    counts, or a number changed after it was written (its checksum no longer matches)."""
    from models import counting

    try:
        entry = json.loads(path.read_text())
        if not isinstance(entry, dict) or entry.get("sha256") != _checksum(entry.get("counts")):
            return None
        return counting.Counts.from_dict(entry["counts"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _count_in_worker(job) -> None:
    count_at(*job)


def _resolve(preset):
    from models import presets

    return presets.get(preset) if isinstance(preset, str) else preset


def prefetch(jobs: list[tuple], progress: bool = True, label: str = "counting") -> None:
    """Counts every uncached (model spec, size) pass, in parallel on the machine's cores."""
    from tqdm import tqdm

    todo = list({_cache_file(m, s): (m, tuple(s)) for m, s in jobs
                 if read_cached_counts(_cache_file(m, s)) is None}.values())
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
        from runtime.processes import spawn_pool

        # TensorFlow is not fork-safe: fresh interpreters, each counting its share; they die
        # with this process, and leaving the block (Ctrl-C too) terminates them at once.
        with spawn_pool(workers) as pool:
            for _ in pool.imap_unordered(_count_in_worker, todo):
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


def recount(preset) -> dict:
    """measure_counts from the model itself: its cached passes are dropped and counted again
    (before --check reports a difference from the golden counts, so that its advice never
    rests on a cache entry)."""
    preset = _resolve(preset)
    for size in preset.inference_runs():
        _cache_file(preset.model, size).unlink(missing_ok=True)
    return measure_counts(preset)


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
                notes.append(f"finding: {finding.text}")
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

def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure under figures/ atomically, unless the image is unchanged."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, metadata={"Software": None})
    plt.close(fig)
    path = FIGURES_DIR / name
    write_if_changed(path, buffer.getvalue())
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


def table_files(df: pd.DataFrame, spec: TableSpec, counts: dict[str, dict] | None = None) -> dict[Path, str]:
    """The files a count table consists of (besides its provenance), with their contents."""
    files = {TABLES_DIR / f"table{spec.table}.csv": df.to_csv(index=False),
             TABLES_DIR / f"table{spec.table}.md": to_markdown(df, spec)}
    if counts:
        files[TABLES_DIR / f"table{spec.table}_breakdown.csv"] = breakdown_frame(counts).to_csv(index=False)
    return files


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


def provenance(spec: TableSpec, fidelity: str, seeds: tuple = (), config_hash: str | None = None,
               with_device: bool = False) -> dict:
    """Where a table's numbers come from: code, configuration, libraries, machine, date.
    `config_hash` defaults to the count tables' `table_fingerprint`; trained tables add the
    device they computed on (`with_device`)."""
    import datetime
    import platform
    import subprocess

    from runtime import machine

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "models", "reproductions", "reported", "training", "data",
           "evaluation", "runtime"):
        commit += "+uncommitted changes"
    libraries = {"python": platform.python_version(),
                 **library_versions("keras", "tensorflow", "jax", "numpy", "pandas")}
    return {
        "table": spec.table,
        "fidelity": fidelity,
        "config_hash": config_hash or table_fingerprint(spec),
        "commit": commit,
        "seeds": list(seeds),
        "libraries": libraries,
        "machine": machine.describe(with_device=with_device),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_provenance(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_outputs(files: dict[Path, str], provenance_path: Path, make_provenance) -> bool:
    """Write a table's files, each only if its content changed, and its provenance only when
    something changed (or the stored configuration hash is another): re-running unchanged
    code leaves the outputs, their dates included, as they are.  True if anything was written."""
    changed = {path: text for path, text in files.items() if not (path.is_file() and path.read_text() == text)}
    record = make_provenance()
    stored = load_provenance(provenance_path)
    if changed or stored is None or stored.get("config_hash") != record["config_hash"]:
        # One set: a folder that refuses one file leaves every file of the table as it was.
        write_set({**changed, provenance_path: json.dumps(record, indent=1) + "\n"})
        return True
    return False


def stale_outputs(files: dict[Path, str], provenance_path: Path, config_hash: str) -> list[str]:
    """The outputs on disk that differ from what the code produces now (for --check)."""
    stale = [shown(path) for path, text in files.items()
             if not path.is_file() or path.read_text() != text]
    stored = load_provenance(provenance_path)
    if stored is None or stored.get("config_hash") != config_hash:
        stale.append(shown(provenance_path))
    return stale


def run_table(spec: TableSpec, fidelity: str = "count", progress: bool = True,
              write: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Measure and compare one table; write it (`write`), or list the files on disk that
    differ from what the code produces (`write=False`, the CI check).  Returns the long-form
    frame and that list (empty when writing)."""
    if fidelity not in spec.fidelities:
        raise ReproductionError(
            f"table {spec.table} supports fidelity {', '.join(spec.fidelities)} so far, not {fidelity!r}"
        )
    counts = measure_all(spec.presets, progress=progress)
    df = build_table(spec, fidelity, counts)
    files = table_files(df, spec, counts)
    provenance_path = TABLES_DIR / f"table{spec.table}.provenance.json"
    if not write:
        return df, stale_outputs(files, provenance_path, table_fingerprint(spec))
    write_outputs(files, provenance_path, lambda: provenance(spec, fidelity))
    return df, []


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
                f"M-Adds {g['madds']} -> {c['madds']} (counted again from the model, not read from the cache; "
                "update the golden file on purpose, in the commit that changes the model)"
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
            finding = finding_for(findings, table, r["row"], r["metric"], r["status"])
            if finding is not None and finding.direction != "either" and \
                    side_of_paper(r["rel_delta"]) != finding.direction:
                failures.append(f"{cell}: its finding says the count is {finding.direction} the paper, but "
                                f"it is {side_of_paper(r['rel_delta'])} ({r['rel_delta']}); correct "
                                "reproductions/findings.csv")
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
