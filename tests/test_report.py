"""The HTML report: structure, stale marking, and a real browser."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from reproductions import report, runner


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.badges, self.states, self.images, self.scripts_external = [], [], [], [], []
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2" and attrs.get("id", "").startswith("table"):
            self._section = int(attrs["id"][5:])
            self.ids.append(self._section)
        classes = attrs.get("class", "").split()
        if tag == "span" and "badge" in classes and self._section:
            self.badges.append((self._section, next(c[2:] for c in classes if c.startswith("s-"))))
        if tag == "span" and "state" in classes and self._section:
            self.states.append((self._section, classes[-1]))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href", "").startswith("http")):
            self.scripts_external.append(attrs)


def parse(html):
    c = Collector()
    c.feed(html)
    return c


def test_report_has_every_table_and_every_cell_status():
    page = parse(report.render())
    assert page.ids == list(range(1, 10))
    for n in range(1, 10):
        files = [runner.TABLES_DIR / f"table{n}{suffix}.csv" for suffix in ("", ".proxy", ".full")]
        statuses = [s for f in files if f.exists()
                    for s in pd.read_csv(f, dtype=str, keep_default_na=False)["status"]]
        assert [s for t, s in page.badges if t == n] == statuses, f"table {n}"
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not page.scripts_external                  # self-contained: nothing fetched


def test_stale_and_missing_tables_are_marked(tmp_path, monkeypatch):
    for path in runner.TABLES_DIR.glob("table1*"):
        shutil.copy(path, tmp_path / path.name)
    prov = json.loads((tmp_path / "table1.provenance.json").read_text())
    prov["config_hash"] = "0000000000000000"
    (tmp_path / "table1.provenance.json").write_text(json.dumps(prov))
    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    html = report.render()
    page = parse(html)
    assert (1, "state-stale") in page.states
    assert (2, "state-notrun") in page.states
    assert "Stale:" in html and "python run_all.py --tables 1" in html


def test_proxy_results_are_shown_as_trends_and_marked_stale_when_the_code_changes(tmp_path, monkeypatch):
    from reproductions import trained
    from reproductions.table1 import SPEC
    from tests.test_trained_runner import fake_results

    monkeypatch.setattr(runner, "TABLES_DIR", tmp_path)
    results = fake_results({"resnet50": [74, 74, 74], "conv-stem-attention-sasa": [73, 73.5, 74],
                            "full-axial-attention": [81, 80, 79]})
    df, trends = trained.build_trained_table(SPEC, "proxy", results)
    df.to_csv(tmp_path / "table1.proxy.csv", index=False)
    prov = {"config_hash": trained.fingerprint(SPEC), "trends": trends}
    (tmp_path / "table1.proxy.provenance.json").write_text(json.dumps(prov))
    html = report.render()
    assert "Tab. 1 at proxy fidelity" in html and "Kendall &tau; with the paper" in html
    assert "74.00 ± 0.00" in html and "80.00 ± 1.00" in html
    badges = [s for t, s in parse(html).badges if t == 1]
    assert badges.count("trend_disagrees") == 2 and badges.count("trend_agrees") == 1
    assert "state state-fresh" in html and "--fidelity proxy</code>" not in html
    prov["config_hash"] = "old"
    (tmp_path / "table1.proxy.provenance.json").write_text(json.dumps(prov))
    assert "python run_all.py --tables 1 --fidelity proxy" in report.render()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report.render())
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught", line, re.I)]
    assert not errors, errors
