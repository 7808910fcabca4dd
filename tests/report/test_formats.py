"""The md / html / text formats and the CLI flags, in process: every HTML image decodes,
every table has rows, nothing is fetched from the network, --out is atomic."""
from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

import yolov7c
from yolov7c.cli import main
from yolov7c.report import load_latency, model_report, zoo_report
from yolov7c.report.closed_form import ClosedForm, closed_form


class Page(HTMLParser):
    """Collects images (src) and, per table, the number of body rows; and external refs."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: list[int] = []
        self.external: list[str] = []
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http:", "https:", "//")):
                self.external.append(a[k])
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "table":
            self.tables.append(0)
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


def check_page(html: str, min_images: int) -> Page:
    p = Page()
    p.feed(html)
    assert not p.external
    assert len(p.images) >= min_images
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()  # decodes the pixels, not just the header
        assert img.size[0] > 100 and img.size[1] > 100
    assert p.tables and all(n > 0 for n in p.tables), p.tables
    return p


def test_model_html_images_decode_and_tables_have_rows() -> None:
    g = yolov7c.graph("yolov7-tiny")
    html = model_report(g, 416, "html")
    assert closed_form(g, 416) is not None  # tiny has ELAN blocks: a scaling family
    p = check_page(html, 3)  # stage bars, layer FLOPs, scaling curves
    assert len(p.tables) == 5  # totals, stage, block, op, layers
    assert p.tables[-1] == len(g.nodes)
    for label in ("macs2", "official", "paper"):
        assert label in html


def test_zoo_html_with_latency(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"results": [{"model": "yolov7", "latency_ms": 12.5},
                                             {"model": "yolov7-tiny", "latency_ms": 3.0}]}))
    html = zoo_report("html", load_latency(str(bench)))
    p = check_page(html, 1)
    assert len(p.tables) == 3  # paper rows, official figures, latency
    assert p.tables[1] == 58


def test_md_has_every_section() -> None:
    md = model_report(yolov7c.graph("yolov7"), 640, "md")
    for title in ("## Totals", "## By stage", "## By block", "## By op", "## Layers"):
        assert title in md
    assert md.count("\n| ") > 106 + 7 + 4


def test_by_selects_groups(capsys) -> None:
    assert main(["report", "yolov7", "--by", "stage,op"]) == 0
    out = capsys.readouterr().out
    assert "== By stage" in out and "== By op" in out and "== Layers" not in out
    for stage in ("stem", "P2", "P3", "P4", "P5", "neck", "head"):
        assert f"\n{stage} " in out


def test_out_is_written_atomically(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "yolov7-tiny", "--format", "html", "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [f.name for f in tmp_path.iterdir()] == ["r.html"]  # no temp file left
    assert main(["report", "yolov7-tiny", "--json", "--out", str(tmp_path / "r.json")]) == 0
    stdout = capsys.readouterr().out
    note = json.loads(stdout[stdout.index("{"):])
    assert note["out"].endswith("r.json")
    assert json.loads((tmp_path / "r.json").read_text())["model"] == "yolov7-tiny"


def test_out_into_a_folder_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert main(["report", "yolov7", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content, ok", [
    ('{"yolov7": 10.0}', True),
    ('[{"name": "yolov7", "mean_ms": 9}]', True),
    ('{"rows": []}', False),
    ("not json", False),
])
def test_load_latency(tmp_path: Path, content: str, ok: bool) -> None:
    p = tmp_path / "b.json"
    p.write_text(content)
    if ok:
        assert list(load_latency(str(p))) == ["yolov7"]
    else:
        with pytest.raises(yolov7c.UserError, match=r"^bench ") as e:
            load_latency(str(p))
        assert e.value.arg == "bench"


def test_flag_conflicts_are_user_errors(capsys) -> None:
    assert main(["report", "--zoo", "yolov7"]) == 2
    assert main(["report"]) == 2
    assert main(["report", "yolov7", "--bench", "x.json"]) == 2
    assert main(["report", "yolov7", "--json", "--format", "md"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_closed_form_agrees_with_numeric_scaling() -> None:
    g = yolov7c.graph("yolov7")
    cf = closed_form(g, 640)
    assert isinstance(cf, ClosedForm)
    from yolov7c.ir.scaling import scale
    from yolov7c.report.grouping import total
    from yolov7c.ir.analysis import analyze
    # at d = 2 every block's depth is an integer, widths unrounded: exact (ir.scaling's claim)
    t = total(analyze(scale(g, depth=2, width=1, round_to=None), 640))
    d, w = sorted(cf.params.free_symbols, key=str)
    assert cf.params.subs({d: 2, w: 1}) == t.params
    assert "params(d, w) =" in cf.text()


def test_zoo_and_compare_json_through_the_cli(capsys) -> None:
    assert main(["report", "--zoo", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["official"]) == 58 and d["official_mismatches"] == 0
    assert main(["report", "yolov7", "--compare-deploy", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    # README: training/yolov7 37,622,682 → deploy/yolov7 fused 36,905,341
    assert (c["training"]["params"], c["deploy"]["params"]) == (37_622_682, 36_905_341)


def _plain_graph() -> yolov7c.Graph:
    from yolov7c.ir.dsl import Builder
    b = Builder("plain")
    x = b.conv(b.input, 16, 3, 2)
    b.detect([b.conv(x, 16, 3, 2)], nc=1, anchors=[[10, 13, 16, 30, 33, 23]])
    return b.build()


def test_a_graph_without_a_scaling_family_says_so_in_one_line() -> None:
    md = model_report(_plain_graph(), 64, "md")
    assert "no closed forms: plain has no ELAN blocks" in md
    assert closed_form(_plain_graph(), 64) is None


def test_closed_form_errors_surface(monkeypatch) -> None:
    """No degrade-and-skip: a failure inside scaling is an error of the report."""
    from yolov7c.ir import scaling

    def broken(*a, **k):
        raise RuntimeError("scaling broke")
    monkeypatch.setattr(scaling, "closed_form", broken)
    with pytest.raises(RuntimeError, match="scaling broke"):
        model_report(yolov7c.graph("yolov7-tiny"), 416, "md")
