"""Docs must be true: every shell command in README.md and docs/*.md is run here, or says what it needs.

A fenced block in bash, sh, shell or console is a list of commands. Each block is either run by this test (in a
temporary folder that sees the repository's configs/, docs/, benchmarks/, cluster/ and workloads/, with `svgap` and
`python` meaning this interpreter and this checkout), or sits right under a marker naming what a test machine lacks:

    <!-- needs: cluster -->   a Ray cluster / several machines
    <!-- needs: gpu -->       a CUDA device
    <!-- needs: long -->      minutes of CPU (make demo, make test, a real-model run, a sweep)
    <!-- needs: network -->   a package index or a model hub

An unmarked block that fails, a marker with another word, or a command hidden in an unchecked block fails here.
In a console block, `$ cmd` lines are commands and the lines after one are output it must print; output holding
`svgap: error:` means the command must exit 2 (a one-line refusal), otherwise every command must exit 0.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "shell", "console"}
NEEDS = {"cluster", "gpu", "long", "network"}
SHARED = ("configs", "docs", "benchmarks", "cluster", "workloads")
FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
MARKER = re.compile(r"^<!--\s*needs:\s*(.*?)\s*-->\s*$")
BLOCK_TIMEOUT_S = 120
GENERATED = ROOT / "docs" / "configuration.md"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    needs: tuple[str, ...]
    body: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, with the `needs` marker on the last non-blank line before its fence."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = MARKER.match(before.strip())
        needs = tuple(w.strip() for w in mark.group(1).split(",")) if mark else ()
        blocks.append(Block(page, i + 1, m.group(1).lower(), needs, tuple(lines[i + 1:end])))
        i = end + 1
    return blocks


def joined(lines: tuple[str, ...]) -> list[str]:
    """Lines with backslash continuations joined."""
    out, cur = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    return out + ([cur] if cur else [])


def shell_steps(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a shell block; comment-only and blank lines dropped."""
    lines = joined(block.body)
    if block.lang != "console":
        return [(ln.strip(), []) for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    steps: list[tuple[str, list[str]]] = []
    for ln in lines:
        if ln.startswith("$ "):
            steps.append((ln[2:].strip(), []))
        elif ln.strip() and steps:
            steps[-1][1].append(ln.strip())
    return steps


ALL = [b for page in PAGES for b in fenced_blocks(page)]
SHELL_BLOCKS = [b for b in ALL if b.lang in SHELLS]
RUN = [b for b in SHELL_BLOCKS if not b.needs]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A working folder that sees the repository's shared folders, and an environment where `svgap` and `python`
    are this interpreter on this checkout, MLflow writes into the folder and the model cache is the usual one."""
    work = tmp_path_factory.mktemp("docs")
    for name in SHARED:
        (work / name).symlink_to(ROOT / name)
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    for name, target in (("svgap", f'"{sys.executable}" -m orchestrator.cli'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
               MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    return work, env


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_unmarked_commands_run(block: Block, sandbox) -> None:
    """Each command of an unmarked block runs as written, in order, and prints what the page says it prints."""
    work, env = sandbox
    steps = shell_steps(block)
    assert steps, f"{block.name}: an empty shell block"
    for command, expected in steps:
        done = subprocess.run(["bash", "-c", f"set -eo pipefail\n{command}"], cwd=work, env=env, text=True,
                              capture_output=True, timeout=BLOCK_TIMEOUT_S)
        said = done.stdout + done.stderr
        want_rc = 2 if any("svgap: error:" in e for e in expected) else 0
        assert done.returncode == want_rc, f"{block.name}: `{command}` exited {done.returncode}:\n{said[-3000:]}"
        assert "Traceback" not in said, f"{block.name}: `{command}` printed a traceback:\n{said[-3000:]}"
        flat = " ".join(said.split())
        for line in expected:
            assert " ".join(line.split()) in flat, f"{block.name}: `{command}` did not print {line!r}:\n{said}"


def test_markers_name_known_needs() -> None:
    """A marker says why a block is not run, in words this test knows; a shell block's marker only."""
    for block in ALL:
        unknown = set(block.needs) - NEEDS
        assert not unknown, f"{block.name}: unknown needs {sorted(unknown)} (known: {sorted(NEEDS)})"
        assert not block.needs or block.lang in SHELLS, f"{block.name}: a needs marker on a {block.lang!r} block"
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            nxt = next((x for x in lines[i + 1:] if x.strip()), "")
            if MARKER.match(line.strip()):
                assert FENCE.match(nxt), f"{page.name}:{i + 1}: a needs marker with no block under it"


def test_no_command_hides_outside_checked_blocks() -> None:
    """`svgap` / `make` commands belong in shell blocks: not in an untyped fence, not in an indented code block."""
    looks_run = re.compile(r"^\s*(\$ )?(svgap|make) ")
    for block in ALL:
        if block.lang not in SHELLS and block.lang not in {"yaml", "json", "python", "toml"}:
            hidden = [ln for ln in block.body if looks_run.match(ln)]
            assert not hidden, f"{block.name}: commands in a {block.lang or 'plain'} block: {hidden}"
    for page in PAGES:
        in_fence = False
        for i, line in enumerate(page.read_text().splitlines()):
            in_fence ^= line.startswith("```")
            assert in_fence or not re.match(r"^ {4}(svgap|make) ", line), \
                f"{page.name}:{i + 1}: an indented command; put it in a ```bash block"


def svgap_mentions() -> list[tuple[str, str]]:
    """(page, `svgap ...` command) for every one the pages name: inline code spans and shell block lines alike."""
    found = []
    for page in PAGES:
        text = page.read_text()
        shell = [ln for b in fenced_blocks(page) if b.lang in SHELLS for ln in joined(b.body)]
        for chunk in re.findall(r"`(svgap [^`]+)`", text) + [ln.split("#")[0] for ln in shell]:
            for part in re.split(r"[|;&]", chunk):
                m = re.search(r"(?:^|\s|\$ )(svgap [a-z].*)", part)
                if m:
                    found.append((page.name, m.group(1).strip()))
    return found


def test_named_commands_and_options_exist() -> None:
    """Every `svgap SUB --option` the pages name, run or not, is a subcommand and option the CLI has."""
    from orchestrator.cli import build_parser

    def choices(parser) -> dict:
        acts = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return acts[0].choices if acts else {}

    root, checked = build_parser(), 0
    for page, command in svgap_mentions():
        words, parser = command.split()[1:], None
        subs = choices(root)
        if words[0] not in subs:
            assert words[0].startswith("-"), f"{page}: `{command}`: no subcommand {words[0]!r}"
            continue
        parser = subs[words[0]]
        if words[1:] and words[1] in choices(parser):
            parser = choices(parser)[words[1]]
        for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", command):
            assert opt in parser._option_string_actions, f"{page}: `{command}`: {words[0]} has no {opt}"
        checked += 1
    assert checked >= 20, checked


def anchors(page: Path) -> set[str]:
    """The heading anchors a page offers, spelled as GitHub spells them."""
    heads = [ln.lstrip("#").strip() for ln in page.read_text().splitlines() if re.match(r"^#{1,6} ", ln)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_is_short_and_links_resolve() -> None:
    """README <= 150 lines (issue 24); every relative link names a file that exists, and a heading it has."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
    link = re.compile(r"\]\(([^)#\s]+)(?:#([^)\s]*))?\)")
    for page in PAGES:
        for path, anchor in link.findall(page.read_text()):
            if re.match(r"^[a-z]+:", path):
                continue
            target = (page.parent / path).resolve()
            if target == GENERATED and not GENERATED.exists():
                continue  # written by its own generator (the config reference), checked once it is there
            assert target.exists(), f"{page.relative_to(ROOT)}: link to missing {path}"
            assert not anchor or anchor in anchors(target), f"{page.relative_to(ROOT)}: no heading #{anchor} in {path}"


def test_readme_points_to_every_page() -> None:
    """The README is the way in: it links every page issue 24 asks for, and CHANGELOG.md."""
    readme = (ROOT / "README.md").read_text()
    pages = ["concepts", "configuration", "engines", "cluster", "studies", "theory", "reliability", "benchmarks",
             "real-model"]
    missing = [p for p in pages if f"](docs/{p}.md)" not in readme] + \
        ([] if "](CHANGELOG.md)" in readme else ["CHANGELOG"])
    assert not missing, f"README.md does not link {missing}"


def test_the_docs_run_something() -> None:
    """The parser finds the pages' commands: some are run, and the marked ones are few enough to be read."""
    assert len(RUN) >= 3, [b.name for b in RUN]
    assert any(b.page.name == "README.md" for b in RUN)
