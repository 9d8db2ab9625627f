"""Every HTML report of a tiny run reads like a results section: no Python reprs, tables without
an index column and rounded to their precision, sentences where there is nothing to show."""

from __future__ import annotations

import re

import pytest
from bs4 import BeautifulSoup

from darknb.pipeline import NOTEBOOKS

pytestmark = pytest.mark.slow

REPRS = ("RunConfig(", "PosixPath(", "{'", "Classifier(", "<pandas.", "RunDir(")
LONG_DECIMAL = re.compile(r"(?<![\w.])[-+]?\d+\.\d{5,}(?![\w.])")  # a number, not an arXiv id


def _outputs(html: str):
    soup = BeautifulSoup(html, "html.parser")
    return soup, soup.select("div.jp-OutputArea-output")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_report_shows_results_not_python(tiny_run, notebook):
    soup, outputs = _outputs((tiny_run / f"{notebook}.html").read_text())
    assert outputs, f"{notebook}.html has no output"
    for out in outputs:
        text = out.get_text(" ")
        for bad in REPRS:
            assert bad not in text, f"{notebook}.html shows a repr {bad!r}: {text[:300]}"
    for table in soup.select("div.jp-OutputArea-output table"):
        assert not table.select("tbody th"), f"{notebook}.html: a table with an index column"
        for cell in table.select("td"):
            value = cell.get_text(" ").strip()
            assert not LONG_DECIMAL.search(value), f"{notebook}.html: unrounded cell {value!r}"
            assert not value.endswith(("...", "…")), f"{notebook}.html: truncated cell {value!r}"


def test_reports_say_what_differs_and_when_there_is_nothing(tiny_run):
    html = {nb: (tiny_run / f"{nb}.html").read_text() for nb in NOTEBOOKS}
    for nb in NOTEBOOKS:  # the tiny run changes epochs, seeds, ...: each report shows them first
        soup, outputs = _outputs(html[nb])
        first = outputs[0]
        assert "Parameters that differ from the defaults" in first.get_text(), nb
        cells = [td.get_text() for td in first.select("td")]
        assert "output_dir" in cells and "data_root" in cells, (nb, cells)
    assert "No video was skipped." in html["05_comparison"]
    soup, _ = _outputs(html["05_comparison"])
    prediction = [t for t in soup.select("table") if "probability (%)" in t.get_text()]
    assert prediction and len(prediction[0].select("tbody tr")) == 3  # 3 classes in the tiny set
    assert "The teacher's enhancer: <strong>zerodce</strong>" in html["00_explore"]
    assert "training," in html["00_explore"] and "no scene or actor is in two splits" in html["00_explore"]
