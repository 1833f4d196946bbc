"""``graphmask show MODEL --out FILE``: module:function and saved files, every format."""
import argparse
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from graphmask.errors import ConfigError
from graphmask.viz import cli
from tests.inspect import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = "tests.inspect.models:seed_model"


def show(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_show_svg_png_dot_txt(tmp_path, capsys):
    assert show(SEED, "--out", str(tmp_path / "flow.svg")) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'flow.svg'}\n"
    root = ET.parse(tmp_path / "flow.svg").getroot()
    assert root.tag.endswith("svg")
    assert show(SEED, "--out", str(tmp_path / "flow.png"), "--backward") == 0
    assert (tmp_path / "flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert show(SEED, "--out", str(tmp_path / "x.out"), "--format", "dot") == 0
    assert (tmp_path / "x.out").read_text().startswith("digraph graphmask {")
    capsys.readouterr()
    assert show(SEED, "--format", "txt", "--backward") == 0
    out = capsys.readouterr().out
    assert out.startswith('Model: "functional"\n')
    assert "created by 'embedding' as ids != 0 -> passed by 'dense' -> used by the masked " \
           "mse loss" in out
    assert "~mask~>" in out and "# gradient of 'dense/kernel'" in out


def test_show_bad_model_specs():
    with pytest.raises(ConfigError, match="neither an existing file nor module:function"):
        show("no_such_file.gmz")
    with pytest.raises(ConfigError, match="cannot import module"):
        show("tests.inspect.nope:seed_model")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        show("tests.inspect.models:nope")
    with pytest.raises(ConfigError, match="returned int, not a model"):
        show("tests.inspect.models:not_a_model")


def test_dispatcher_round_trip_in_a_subprocess(tmp_path):
    out = tmp_path / "tmp.svg"
    res = subprocess.run([sys.executable, "-m", "graphmask.cli", "show", SEED, "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert ET.parse(out).getroot().tag.endswith("svg")
    bad = subprocess.run([sys.executable, "-m", "graphmask.cli", "show", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and "graphmask show: error:" in bad.stderr


def test_show_a_saved_model_file(tmp_path):
    path = tmp_path / "seed.gmz"
    models.seed_model().save(str(path))
    assert show(str(path), "--out", str(tmp_path / "saved.dot")) == 0
    from graphmask.viz import to_dot
    assert (tmp_path / "saved.dot").read_text() == to_dot(models.seed_model())
