"""The rendered report: PNGs non-empty, the HTML has every section and embeds its images."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

from fixtures.results.synth import write_experiment
from harness.compare import compare_experiment
from harness.compare.plots import PLOT_FILES
from harness.compare.report import HTML_SECTIONS, write_reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gpu_series(exp: Path) -> None:
    """Give every run GPU samples, as a machine with an NVIDIA GPU would record them."""
    for path in exp.glob("results/*/*/results.json"):
        doc = json.loads(path.read_text())
        mode = doc["run"]["mode"]
        ru = doc["modes"][mode]["resource_usage"]
        times = [t for t, _ in ru["cpu_cores"]]
        ru["gpu_usage"] = {"GPU-1": [[t, 60.0 + (k % 7)] for k, t in enumerate(times)]}
        ru["gpu_memory"] = {"GPU-1": [[t, 2048.0 + k] for k, t in enumerate(times)]}
        path.write_text(json.dumps(doc))


def test_report_files_and_html_sections(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "exp", seeds=[0, 1, 2], modes={
        "baseline": {"step": 0.05, "wait_fraction": 0.4}, "optimization": {"step": 0.04, "wait_fraction": 0.05}})
    _gpu_series(exp)
    comp = compare_experiment(exp)
    paths = write_reports(comp)
    out = exp / "results" / "comparison"
    for name in PLOT_FILES.values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    html = paths["html"].read_text(encoding="utf-8")
    for section in HTML_SECTIONS:
        assert f'<section id="{section}">' in html, section
    for title in PLOT_FILES:
        assert f"<h3>{title}</h3>" in html
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == len(PLOT_FILES)
    embedded = {base64.b64decode(u) for u in uris}
    assert embedded == {(out / name).read_bytes() for name in PLOT_FILES.values()}
    assert "src=\"http" not in html and "<script" not in html  # self-contained, nothing fetched
    assert "baseline waited for data 40 % of each step; optimization 5 %." in html
    md = paths["markdown"].read_text(encoding="utf-8")
    for name in PLOT_FILES.values():
        assert f"]({name})" in md
    doc = json.loads(paths["json"].read_text())
    assert doc["comparison"]["verdict"] == "FASTER"
    assert doc["modes"]["baseline"]["resource_usage"]["gpu_usage"]["GPU-1"]


def test_report_without_gpu_or_plots_says_why(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path / "exp", seeds=[0, 1], modes={"baseline": {}, "optimization": {}})
    comp = compare_experiment(exp)
    out = exp / "results" / "comparison"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.png").write_bytes(b"stale")
    paths = write_reports(comp)
    assert not (out / "gpu.png").exists()  # a stale plot must not pass for this comparison
    html = paths["html"].read_text(encoding="utf-8")
    assert "<h3>GPU over time</h3><p>Not drawn: the runs recorded no data for it</p>" in html
    shutil.rmtree(out)
    paths = write_reports(comp, plots=False)
    html = paths["html"].read_text(encoding="utf-8")
    assert "data:image/png" not in html and "plots were skipped (--no-plots)" in html
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "comparison.json", "report.html", "report.md"]
