"""The HTML report (issue #15): the claims first, the paper's tables in their own shape, proxies
judged through the claims, figures beside the paper's, and a real browser's view of it."""

import importlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reproductions import claims, proxy_figures, report, runner, trained

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Issue #15: the report was 30,700 px tall at 1400 px; the full suite's must be at most a third.
HEIGHT_BEFORE_ISSUE_15 = 30_700
PROXY_TABLES = tuple(n for n in range(1, 10)
                     if trained.declared(importlib.import_module(f"reproductions.table{n}").SPEC, "proxy"))


class Page(HTMLParser):
    """What the tests look at: sections in order, claim badges, the paper-shaped tables
    (rows, metric headings, cells with their classes, titles, text and footnote marks), and
    collapsed sections."""

    def __init__(self, html):
        super().__init__()
        self.sections, self.claim_badges, self.tables, self.collapsed = [], {}, {}, []
        self._section = self._table = self._row = self._open = None
        self._heading_row, self._in_sup = 0, False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "section":
            self._section = attrs.get("id")
            self.sections.append(self._section)
        if tag == "details" and "collapsed" in classes:
            self.collapsed.append((self._section, "open" in attrs))
        if tag == "span" and "verdict" in classes and "data-claim" in attrs:
            self.claim_badges[attrs["data-claim"]] = next(c[2:] for c in classes if c.startswith("v-"))
        if tag == "table" and "paper" in classes and attrs["data-table"].isdigit():
            self._table = self.tables.setdefault(int(attrs["data-table"]), {"rows": [], "headings": [], "cells": []})
            self._heading_row = 0
        if self._table is None:
            return
        if tag == "tr":
            self._row = attrs.get("data-row")
            self._table["rows"] += [self._row] if self._row else []
            self._heading_row += 0 if self._row else 1
        if tag == "th" and self._heading_row == 1:
            self._open = {"text": "", "marks": ""}
            self._table["headings"].append(self._open)
        if tag == "td" and "cell" in classes:
            self._open = {"row": self._row, "metric": attrs["data-metric"], "classes": classes,
                          "title": attrs.get("title", ""), "text": "", "marks": "", "entries": []}
            self._table["cells"].append(self._open)
        if tag == "span" and "meas" in classes and self._open is not None:
            self._open["entries"].append(attrs.get("title", ""))
        self._in_sup = self._in_sup or tag == "sup"

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None
        if tag in ("th", "td"):
            self._open = None
        if tag == "sup":
            self._in_sup = False

    def handle_data(self, data):
        if self._open is not None:
            self._open["marks" if self._in_sup else "text"] += data

    def heading(self, table: int, metric: str) -> dict:
        return next(h for h in self.tables[table]["headings"] if re.sub(r"\s*\(.*", "", h["text"]) == metric)


def paper_rows(n):
    return list(dict.fromkeys(runner.load_reported(n)["row"]))


def paper_metrics(n):
    return list(dict.fromkeys(runner.load_reported(n)["metric"]))


# --- a full suite's outputs, without training ---------------------------------------------------

def fake_results(spec, rng) -> dict:
    """Per row, three seeds of what an experiment returns: metrics near a proxy-like fraction of
    the paper's value (PQ@<ratio> falling off away from ratio 1), a learning curve, run times and
    the proxy model's counts."""
    reported = runner.load_reported(spec.table)
    results = {}
    for row, experiment in trained.declared(spec, "proxy"):
        cells = reported[reported["row"] == row].set_index("metric")
        base = {m: 0.7 * float(cells.at[m, "value"] or 50) if m in cells.index else 40.0 for m in experiment.metrics}
        params = float(cells.at["Params", "value"] or 10) if "Params" in cells.index else 10.0
        runs = []
        for seed in range(3):
            metrics = {m: v + rng.normal(0, 1.5) for m, v in base.items()}
            for ratio in experiment.test_ratios:
                metrics.update({f"{m}@{ratio:g}": v * (1 - 0.15 * abs(np.log2(ratio))) + rng.normal(0, 1.5)
                                for m, v in base.items()})
            seconds = float(rng.uniform(300, 900))
            runs.append({"seed": seed, "metrics": metrics, "seconds": round(seconds, 1),
                         "train_seconds": round(0.9 * seconds, 1), "machine": {"cpu": {"model": "Test CPU", "cores": 2}},
                         "model": {"params": int(params * 62_500), "madds": int(params * 4e6)},
                         "curve": [[12 * (i + 1), round(2.5 * np.exp(-i / 8) + 0.3 + rng.normal(0, 0.02), 5)]
                                   for i in range(25)]})
        results[row] = runs
    return results


def write_proxy_table(n: int, results: dict):
    """tables/table<N>.proxy.csv and its provenance, as trained.run_trained_table writes them."""
    from runtime import machine

    spec = importlib.import_module(f"reproductions.table{n}").SPEC
    df, trends = trained.build_trained_table(spec, "proxy", results)
    runner.write_atomic(runner.TABLES_DIR / f"table{n}.proxy.csv", df.to_csv(index=False))
    runs = [r for row_runs in results.values() for r in row_runs]
    provenance = {
        **runner.provenance(spec, "proxy", (0, 1, 2), config_hash=trained.fingerprint(spec)),
        "trends": trends, "values": trained.seed_values(df), "proxy_scale": "small",
        "experiments": {row: e.describe() for row, e in trained.declared(spec, "proxy")},
        "curves": {row: {str(r["seed"]): r.get("curve", []) for r in rr} for row, rr in results.items()},
        "seed_runs": {row: [{"seed": r["seed"], "seconds": r.get("seconds"), "train_seconds": r.get("train_seconds"),
                             "machine": machine.summary(r.get("machine")),
                             **{k: r[k] for k in ("run", "shared_from") if k in r}} for r in rr]
                      for row, rr in results.items()},
        "model_counts": {row: rr[0]["model"] for row, rr in results.items() if rr[0].get("model")},
        "training_seconds": round(sum(r.get("seconds") or 0 for r in trained.trained_here(runs)), 1)}
    runner.write_atomic(runner.TABLES_DIR / f"table{n}.proxy.provenance.json", json.dumps(provenance, indent=1))


def build_full_suite(folder: Path, monkeypatch):
    """tables/ and figures/ as a full suite leaves them: the committed count tables and figures,
    a proxy table for every table that declares one, the claims decided on them, and the report."""
    for name in ("tables", "figures"):
        shutil.copytree(runner.OUTPUT_DIR / name, folder / name, dirs_exist_ok=True)
    for name, value in (("OUTPUT_DIR", folder), ("TABLES_DIR", folder / "tables"), ("FIGURES_DIR", folder / "figures")):
        monkeypatch.setattr(runner, name, value)
    for stale in (folder / "tables").glob("*.proxy.*"):
        stale.unlink()
    rng = np.random.default_rng(0)
    for n in PROXY_TABLES:
        write_proxy_table(n, fake_results(importlib.import_module(f"reproductions.table{n}").SPEC, rng))
    monkeypatch.setattr(claims, "PERMUTATIONS", 199)  # the verdicts' wording, not their precision, matters here
    monkeypatch.setattr(claims, "BOOTSTRAP", 200)
    claims.write()
    return report.write()


@pytest.fixture(scope="module")
def full_suite(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = tmp_path_factory.mktemp("full-suite")
        path = build_full_suite(folder, monkeypatch)
        yield {"folder": folder, "html": path.read_text(), "claims": pd.read_csv(folder / "tables" / "claims.csv",
                                                                                   dtype=str, keep_default_na=False)}


# --- structure ------------------------------------------------------------------------------------

def test_the_claims_checklist_comes_first_with_a_verdict_badge_per_claim():
    html = report.render()
    page = Page(html)
    assert page.sections[:4] == ["claims", "methodology", "summary", "figures"]
    assert page.sections[4:] == [f"table{n}" for n in range(1, 10)]
    decided = pd.read_csv(runner.TABLES_DIR / "claims.csv", dtype=str, keep_default_na=False)
    assert page.claim_badges == {r.claim: r.verdict.replace(" ", "") for r in decided.itertuples()}
    assert set(page.claim_badges) == set(claims.load_claims()["id"])
    methodology = re.search(r'<section id="methodology">(.*?)</section>', html, re.S).group(1)
    for says in ("Fashion-MNIST", "MNIST-5k digits", "scikit-image", "synthetic", "Welch", "permutation", "TOST",
                 "bootstrap", "Holm", "Counting convention"):
        assert says in methodology, says


def test_a_claim_without_a_verdict_on_disk_is_shown_as_not_run(tmp_path, monkeypatch):
    shutil.copytree(runner.TABLES_DIR, tmp_path, dirs_exist_ok=True)
    decided = pd.read_csv(tmp_path / "claims.csv", dtype=str, keep_default_na=False)
    decided[decided["claim"] != "T1-axial-cost"].to_csv(tmp_path / "claims.csv", index=False)
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    badges = Page(report.render()).claim_badges
    assert badges["T1-axial-cost"] == "notrun" and len(badges) == len(claims.load_claims())


def test_every_paper_table_has_the_papers_shape():
    page = Page(report.render())
    for n in range(1, 10):
        table = page.tables[n]
        assert table["rows"] == paper_rows(n), f"Tab. {n}: one line per paper row, in the paper's order"
        headings = [re.sub(r"\s*\(.*", "", h["text"]) for h in table["headings"]]
        assert headings[-len(paper_metrics(n)):] == paper_metrics(n), f"Tab. {n}: one column per metric"
        reported = runner.load_reported(n)
        assert len(table["cells"]) == len(reported), f"Tab. {n}: one cell per printed cell"
        for cell in table["cells"]:
            printed = reported[(reported["row"] == cell["row"]) & (reported["metric"] == cell["metric"])]["value"]
            assert cell["text"].startswith(printed.iloc[0] or "\u2013"), cell
    # Tab. 3 and 5 have no cell measurable here: one line each, expandable; nothing else is collapsed.
    assert page.collapsed == [("table3", False), ("table5", False)]


def test_count_cells_are_coloured_by_status_and_findings_are_footnotes_shown_once():
    from markupsafe import escape

    html = report.render()
    page = Page(html)
    count = pd.read_csv(runner.TABLES_DIR / "table6.csv", dtype=str, keep_default_na=False)
    proxy_file = runner.TABLES_DIR / "table6.proxy.csv"
    proxy = pd.read_csv(proxy_file, dtype=str, keep_default_na=False) if proxy_file.exists() else count.iloc[:0]
    measured_by_proxy = {(r["row"], r["metric"]) for _, r in proxy[proxy["measured"] != ""].iterrows()}
    for cell in page.tables[6]["cells"]:
        if (cell["row"], cell["metric"]) in measured_by_proxy:  # shown as the proxy's, neutral
            assert "s-proxy" in cell["classes"], cell
            continue
        status = count[(count["row"] == cell["row"]) & (count["metric"] == cell["metric"])]["status"].iloc[0]
        assert f"s-{status}" in cell["classes"], cell
    # Tab. 6's grid finding covers all ten M-Adds cells: its paragraph once, its number on the column.
    finding = pd.read_csv(runner.FINDINGS_FILE, dtype=str).query("table == '6' and row == '*'")["finding"].iloc[0]
    assert html.count(str(escape(finding))) == 1
    number = re.search(r'<li id="t6-fn(\d+)"[^>]*>Finding: ' + re.escape(str(escape(finding))), html).group(1)
    assert number in page.heading(6, "M-Adds")["marks"].split(",")
    # Another paper's method: the reason once per table, marked on the row's name, not on each cell.
    tab4 = page.tables[4]["cells"]
    assert not any(c["marks"] for c in tab4 if c["row"] == "tascnet")


def test_proxy_cells_are_neutral_with_seeds_on_hover_and_the_facts_of_the_run(tmp_path, monkeypatch):
    shutil.copytree(runner.TABLES_DIR, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    from reproductions.table1 import SPEC

    results = fake_results(SPEC, np.random.default_rng(1))
    results["resnet50"] = [dict(r, metrics={"Top-1": v}) for r, v in zip(results["resnet50"], (90.0, 91.0, 92.0))]
    write_proxy_table(1, results)
    html = report.render()
    df = pd.read_csv(tmp_path / "table1.proxy.csv", dtype=str, keep_default_na=False)
    assert "trend_disagrees" in set(df["status"])                     # ResNet-50 first: the paper's order is broken
    top1 = [c for c in Page(html).tables[1]["cells"] if c["metric"] == "Top-1" and c.get("entries")]
    assert len(top1) == len(df) and all("s-proxy" in c["classes"] for c in top1)   # never red for a trend
    resnet = next(c for c in top1 if c["row"] == "resnet50")
    assert "91.0 ± 1.0" in resnet["text"] and "90.00, 91.00, 92.00" in resnet["entries"][0]
    assert not resnet["marks"]                                        # the experiment is in the facts, not a footnote
    assert "order differs from the paper" in resnet["title"]          # the trend is on hover only
    assert "s-trend" not in html
    facts = re.search(r"<b>proxy \(measured\)</b>(.*?)</p>", html, re.S).group(1)
    assert "Fashion-MNIST" in facts and "seeds 0, 1, 2" in facts and "18 runs" in facts and "Test CPU" in facts


def test_seeds_read_from_another_tables_trainings_are_named_and_not_timed_again(tmp_path, monkeypatch):
    # Tab. 2 reads Axial-DeepLab-S seeds from Tab. 6: the facts line says so, and its times
    # (total, per run, training only) are those of the runs it trained itself.
    shutil.copytree(runner.TABLES_DIR, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    from reproductions.table1 import SPEC

    results = fake_results(SPEC, np.random.default_rng(1))
    rows = list(results)
    for i, (row, runs) in enumerate(results.items()):
        for r in runs:
            r.update(run=f"run-{row}-{r['seed']}", seconds=60.0 if i else 4000.0, train_seconds=50.0 if i else 3000.0)
            if i == 0:
                r["shared_from"] = 6
    write_proxy_table(1, results)
    facts = re.search(r"<b>proxy \(measured\)</b>(.*?)</p>", report.render(), re.S).group(1)
    own = 3 * (len(rows) - 1)  # runs of 60 s each: a minute apiece
    assert f"{3 * len(rows)} runs (3 read from Tab. 6&#39;s trainings, whose time is counted there)" in facts
    assert f"{own:.1f} min in all (60 s\u201360 s per run, {own * 50 / 60:.1f} min of it training)" in facts


def test_stale_and_missing_tables_are_marked(tmp_path, monkeypatch):
    for path in runner.TABLES_DIR.glob("table1*"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(runner.TABLES_DIR / "claims.csv", tmp_path / "claims.csv")
    prov = json.loads((tmp_path / "table1.provenance.json").read_text())
    prov["config_hash"] = "0000000000000000"
    (tmp_path / "table1.provenance.json").write_text(json.dumps(prov))
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    html = report.render()
    assert re.search(r'id="table1".*?state-stale', html, re.S) and re.search(r'id="table2".*?state-notrun', html, re.S)
    assert "Stale:" in html and "python run_all.py --tables 1`" in html
    assert Page(html).tables[2]["rows"] == paper_rows(2)             # the paper's shape, even without results


def test_the_model_zoo_is_measured_beside_the_collapsed_tab_5(tmp_path, monkeypatch):
    from reproductions import model_zoo

    shutil.copytree(runner.TABLES_DIR, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    assert "Not evaluated here" in report.render()
    reported = model_zoo.load_reported()
    row = reported["row"].iloc[0]
    printed = {m: float(v) for m, v in reported[reported["row"] == row].set_index("metric")["value"].items()}
    zoo = model_zoo.build_table(reported, None, row, {"PQ": printed["PQ"], "mIoU": printed["mIoU"] - 3}, "test run")
    zoo.to_csv(tmp_path / f"{model_zoo.STEM}.csv", index=False)
    html = report.render()
    table = re.search(r'<table class="paper" data-table="zoo">(.*?)</table>', html, re.S).group(1)
    assert table.count("<tr data-row=") == reported["row"].nunique()
    assert table.count("cell s-match") == 1 and table.count("cell s-off") == 1
    assert Page(html).collapsed == [("table3", False), ("table5", False)]


def test_a_report_with_no_results_at_all_still_renders(tmp_path, monkeypatch):
    for name, value in (("TABLES_DIR", tmp_path / "tables"), ("FIGURES_DIR", tmp_path / "figures")):
        monkeypatch.setattr(runner, name, value)
    page = Page(report.render())
    assert set(page.claim_badges.values()) == {"notrun"} and sorted(page.tables) == list(range(1, 10))


def test_proxy_figures_are_drawn_for_the_proxies_that_ran_and_say_so_for_the_others(full_suite):
    figures = full_suite["folder"] / "figures"
    for name in [proxy_figures.FIGURE3, proxy_figures.SPAN, proxy_figures.SCALE_STRESS] + [
            proxy_figures.curves_name(n) for n in PROXY_TABLES]:
        assert (figures / name).stat().st_size > 5_000, name
    assert "proxy (measured): not run" not in full_suite["html"]
    assert full_suite["html"].count("Training loss against step") == len(PROXY_TABLES)
    # Without Tab. 9's proxy, Fig. 3's proxy side says it is not run and its old image goes.
    for path in (full_suite["folder"] / "tables").glob("table9.proxy.*"):
        path.rename(path.with_suffix(path.suffix + ".hidden"))
    try:
        html = report.write().read_text()
        assert not (figures / proxy_figures.FIGURE3).exists()
        assert re.search(r'id="figure3".*?proxy \(measured\): not run.*?id="figure-scale-stress"', html, re.S)
    finally:
        for path in (full_suite["folder"] / "tables").glob("table9.proxy.*.hidden"):
            path.rename(path.with_suffix(""))
        report.write()


def test_the_scale_stress_figure_draws_l_s_advantage_in_points_with_its_standard_error():
    """X-71 ends near 1 PQ at 2-4x, where a relative gain over it means nothing: the figure draws the
    difference in points, as F4-scale tests it, with Welch's standard error of that difference."""
    l_row = {"measured": "30", "std": "2", "values": "28;30;32"}
    x71 = {"measured": "0.5", "std": "1", "values": "0;0;0;2"}
    difference, se = proxy_figures.advantage(l_row, x71)
    assert difference == pytest.approx(29.5)
    assert se == pytest.approx((4 / 3 + 1 / 4) ** 0.5)
    older = {"measured": "0.5", "std": "1", "values": "", "seeds": "0,1,2,3"}  # written before `values`
    assert proxy_figures.advantage(l_row, older)[1] == pytest.approx((4 / 3 + 1 / 4) ** 0.5)
    one_seed = {"measured": "0.5", "std": "0", "values": "0.5"}
    assert np.isnan(proxy_figures.advantage(l_row, one_seed)[1])


def test_learning_curve_panels_take_the_paper_s_name_unless_two_drawn_rows_share_it():
    paper = pd.DataFrame({"row": ["x71", "x71", "x71-ms", "span5", "span65", "l"],
                          "label": ["Panoptic-DeepLab", "Panoptic-DeepLab", "Panoptic-DeepLab", "Axial-L", "Axial-L",
                                    "Axial-DeepLab-L"]})
    titles = proxy_figures.panel_titles(paper, ["x71", "span5", "span65", "l"])
    assert titles == {"x71": "Panoptic-DeepLab", "span5": "span5", "span65": "span65", "l": "Axial-DeepLab-L"}


# --- a real browser ---------------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", () => {
  const tables = {};
  for (const t of document.querySelectorAll("table.paper")) {
    tables[t.dataset.table] = {rows: t.querySelectorAll("tbody tr").length,
                               shown: t.checkVisibility()};
  }
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    height: document.documentElement.scrollHeight,
    width: document.documentElement.clientWidth,
    first_section: document.querySelector("section").id,
    badges: Array.from(document.querySelectorAll("#claims span.verdict[data-claim]")).map(
      b => [b.dataset.claim, b.checkVisibility()]),
    tables: tables,
    images: Array.from(document.images).map(i => i.naturalWidth > 0),
  });
  document.body.appendChild(probe);
});
</script>"""


def open_in_chromium(html: str, folder: Path, width: int = 1400) -> tuple[dict, list[str]]:
    """Load the page in headless Chromium at `width` px; what the probe saw, and the console errors."""
    page = folder / "report-probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={folder / 'profile'}", "--enable-logging=stderr", "--v=0", f"--window-size={width},900",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page did not finish loading"
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    return json.loads(found.group(1).replace("&quot;", '"')), [l for l in console if re.search(r"error|uncaught", l, re.I)]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_full_suites_report_in_headless_chromium(full_suite, tmp_path):
    seen, errors = open_in_chromium(full_suite["html"], tmp_path)
    assert not errors, errors
    assert seen["first_section"] == "claims"
    assert sorted(c for c, _ in seen["badges"]) == sorted(claims.load_claims()["id"])
    assert all(visible for _, visible in seen["badges"])
    assert set(full_suite["claims"]["verdict"]) - {"not run"}, "the fake suite decides claims"
    for n in range(1, 10):
        assert seen["tables"][str(n)]["rows"] == len(paper_rows(n)), f"Tab. {n}"
        assert seen["tables"][str(n)]["shown"] == (n not in (3, 5)), f"Tab. {n}: only reported-only tables collapse"
    assert seen["images"] and all(seen["images"])
    assert seen["height"] <= HEIGHT_BEFORE_ISSUE_15 / 3, f"the report is {seen['height']} px tall at 1400 px"
