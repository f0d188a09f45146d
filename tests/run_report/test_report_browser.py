"""report.html in a real browser: headless Chromium (Debian `chromium`) opens it from disk,
the DOM has the tables and loaded images, a column sorts, and the screenshot is not blank."""
import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from report_study import PNG_NAMES

from report import write_report

# appended to a copy of the page: after load, write what the browser sees into the DOM
PROBE = """<script>
window.addEventListener("load", function () {
  var loaded = Array.prototype.filter.call(document.images, function (i) { return i.complete && i.naturalWidth > 0; });
  var table = document.querySelector("#rounds table.sortable");
  var order = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
    return r.cells[0].textContent; }); };
  var loss = table.tHead.rows[0].cells[1];
  loss.click(); var asc = order(); loss.click(); var desc = order();
  var rows = {};
  document.querySelectorAll("section").forEach(function (s) { rows[s.id] = s.querySelectorAll("tbody tr").length; });
  var charts = {};
  document.querySelectorAll("figure.chart-fig").forEach(function (f) {
    var svg = f.querySelector("svg"), box = svg.getBoundingClientRect(), drawn = 0;
    f.querySelectorAll("rect.bar, circle.point, circle.marker").forEach(function (e) {
      var b = e.getBoundingClientRect(); if (b.width > 0 && b.height > 0) drawn += 1; });
    f.querySelectorAll("polyline.series").forEach(function (e) { if (e.getTotalLength() > 1) drawn += 1; });
    charts[f.id] = {w: box.width, h: box.height, drawn: drawn, caption: f.querySelector("figcaption").textContent};
  });
  var head = document.getElementById("run-header");
  var pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify({loaded: loaded.map(function (i) { return i.alt; }), asc: asc, desc: desc,
    rows: rows, sortable: document.querySelectorAll("table.sortable").length, header: loss.textContent,
    charts: charts, runHeader: head ? head.innerText : "", runHeaderHeight: head ? head.getBoundingClientRect().height : 0});
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian chromium is missing: run `make test` (it installs chromium when missing) "
                    "or `apt-get install chromium`")
    return exe


def _chromium(exe, tmp_path, *args):
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_chromium_renders_the_report_from_disk(study_dir, tmp_path, chromium):
    page = write_report(study_dir, tmp_path / "report.html")
    text = page.read_text()
    assert not re.search(r"https?://", text)  # nothing to fetch: it opens with no network

    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chromium(chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    seen = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    assert sorted(seen["loaded"]) == sorted(PNG_NAMES)  # every figure decoded by the browser
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) == len(PNG_NAMES)
    assert seen["sortable"] >= 8
    assert seen["rows"]["targets"] == 4 and seen["rows"]["rounds"] == 3 and seen["rows"]["writers"] == 6
    assert seen["rows"]["speakers"] == 4 and seen["rows"]["nested"] == 1
    assert seen["header"] == "train_loss"
    assert seen["asc"] == ["2", "1", "0"] and seen["desc"] == ["0", "1", "2"]  # sorted by train_loss
    # the header and every population chart render, with something drawn in each
    assert seen["runHeaderHeight"] > 10
    for word in ("mlp", "ditto", "clip → mean", "30 devices", "7"):
        assert word in seen["runHeader"], word
    assert set(seen["charts"]) == {"chart-status", "chart-loss", "chart-accuracy", "chart-update-norm", "chart-wall",
                                   "chart-coverage", "chart-final-cdf", "chart-personalized"}
    for name, chart in seen["charts"].items():
        assert chart["w"] > 200 and chart["h"] > 100 and chart["drawn"] > 0, (name, chart)
    assert seen["charts"]["chart-status"]["drawn"] == 6  # 3 rounds x (accepted, dropped) from clients.parquet
    assert seen["charts"]["chart-personalized"]["drawn"] == 12 and seen["charts"]["chart-accuracy"]["drawn"] == 1

    shot = tmp_path / "shot.png"
    _chromium(chromium, tmp_path, "--window-size=1280,2200", f"--screenshot={shot}", page.as_uri())
    if os.environ.get("FEDPOP_REPORT_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["FEDPOP_REPORT_SCREENSHOT"])
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2200, 1280)
    assert pixels.std() > 10 and (pixels.sum(axis=2) < 600).mean() > 0.01  # not blank: text, tables, plots
    blue = np.abs(pixels - [31, 119, 180]).sum(axis=2) < 40  # matplotlib's first line colour: a figure shows
    assert blue.sum() > 50
