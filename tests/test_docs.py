"""Every ```python block of README.md and docs/*.md runs, so the docs cannot rot.

Rules (also stated in docs/index.md):

* the blocks of one file run in order in one namespace, in a temporary working folder
  (files a block writes with a relative path land there);
* a block preceded by ``<!-- no-test: <why> -->`` is skipped; the reason is required
  and should be a shell- or IO-heavy case (the marker without a reason fails the test);
* a block followed by ``<!-- output -->`` and a fenced block must print exactly that
  fenced block's text (trailing spaces and blank lines aside): printed output in the
  docs is real output;
* every relative link in these files points at a file that exists.
"""
from __future__ import annotations

import contextlib
import io
import pathlib
import re
import traceback
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
NO_TEST = re.compile(r"^<!--\s*no-test\s*(?::\s*(.*?))?\s*-->\s*$")
OUTPUT = re.compile(r"^<!--\s*output\s*-->\s*$")


@dataclass
class Block:
    lang: str
    line: int           # 1-based line of the opening fence
    code: str
    skip_reason: str | None = None
    skip_marked: bool = False
    expected: str | None = None


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i, prev, after_output = 0, "", False
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                prev = lines[i].strip()
                after_output = bool(OUTPUT.match(prev))
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        code = "\n".join(body) + "\n"
        if after_output and blocks and blocks[-1].lang == "python":
            blocks[-1].expected = code
        else:
            b = Block(lang, start + 1, code)
            skip = NO_TEST.match(prev)
            if skip:
                b.skip_marked, b.skip_reason = True, (skip.group(1) or "").strip()
            blocks.append(b)
        prev, after_output = "```", False
        i += 1
    return blocks


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_code_blocks_run(path, tmp_path, monkeypatch):
    import matplotlib

    import graphmask
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    graphmask.clear_session()
    graphmask.set_random_seed(1234)
    namespace = {"__name__": f"docs_{path.stem}"}
    rel = path.relative_to(ROOT)
    ran = 0
    for b in parse(path.read_text(encoding="utf-8")):
        if b.lang != "python":
            continue
        if b.skip_marked:
            assert b.skip_reason, (f"{rel}:{b.line}: <!-- no-test --> needs a reason: "
                                   f"<!-- no-test: why -->")
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(b.code, f"{rel}:{b.line}", "exec"), namespace)  # noqa: S102
        except Exception:  # noqa: BLE001 -- any failure of a docs block fails the test
            pytest.fail(f"{rel}: the python block at line {b.line} failed:\n"
                        f"{traceback.format_exc(limit=-3)}", pytrace=False)
        if b.expected is not None:
            assert _norm(out.getvalue()) == _norm(b.expected), (
                f"{rel}: the block at line {b.line} printed\n{out.getvalue()}\n"
                f"but the docs show\n{b.expected}")
        ran += 1
    assert ran or not any(b.lang == "python" for b in parse(path.read_text(encoding="utf-8")))


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_relative_links_exist(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{path.relative_to(ROOT)} links to missing {target}"


def test_parser_rules():
    lines = ["```python", "print(1)", "```", "<!-- output -->", "```text", "1", "```",
             "<!-- no-test: starts a server -->", "", "```python", "serve()", "```",
             "```bash", "ls", "```", "<!-- no-test -->", "```python", "x = 1", "```",
             "- item:", "  ```python", "  y = 2", "  ```"]
    text = "\n".join(lines)
    blocks = parse(text)
    assert [(b.lang, b.line) for b in blocks] == [("python", 1), ("python", 10), ("bash", 13),
                                                  ("python", 17), ("python", 21)]
    assert blocks[0].expected == "1\n" and blocks[1].skip_reason == "starts a server"
    assert blocks[3].skip_marked and not blocks[3].skip_reason
    assert blocks[4].code == "y = 2\n"


def test_the_docs_exist_and_readme_has_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -e . && graphmask demo" in readme
    assert "pip install -e '.[test]' && python -m pytest" in readme
    for name in ("index", "tutorial", "masking", "performance"):
        assert (ROOT / "docs" / f"{name}.md").is_file()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[test]'" in ci and "python -m pytest" in ci
