"""The documentation and the help as a newcomer meets them: every command the README and docs/ show
parses as written (and the quick ones run), their links lead somewhere, the README's first screen
says what to do, and `--help` states each default once, correctly."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

import pytest

from catdog.cli import COMMAND_MODULES, build_parser, main

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
GUIDE = ("data", "models", "training", "trust", "audit", "serving-and-export", "scaling-out", "guarantees",
         "python-api", "benchmarks")
# Environment assignments before a command (`CATDOG_DATA=DIR make run`).
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a page's ```sh blocks, as argument lists (continuations joined, comments and
    environment assignments dropped)."""
    commands = []
    for block in fenced_blocks(text, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def inline_commands(text: str) -> list[list[str]]:
    """The catdog commands of a page's inline code spans (`catdog train --resume RUN`)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", prose)
    commands = []
    for span in spans:
        words = shlex.split(" ".join(span.split()))
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words and words[0] in ("catdog", ".venv/bin/catdog") and not names_a_command(words[1:]):
            commands.append(words)
    return commands


def names_a_command(words: list[str]) -> bool:
    """Whether `words` only name a command (`catdog evaluate`, `catdog data info` in a sentence)."""
    parser = build_parser()
    for word in words:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if word not in choices:
            return False
        parser = choices[word]
    return True


def catdog_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for words in shell_commands(text) + inline_commands(text):
            if words[0] in ("catdog", ".venv/bin/catdog"):
                found.append((page.relative_to(REPO).as_posix(), words[1:]))
    return found


COMMANDS = catdog_commands()


def parse_error(argv: list[str]) -> str | None:
    """What catdog's parser says of `argv`, if it refuses it."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            return None if e.code == 0 else err.getvalue().strip()
    return None


def test_the_pages_show_many_commands_and_the_extraction_sees_them():
    assert len(COMMANDS) > 60
    text = "```sh\nCATDOG_DATA=x make run   # a comment\ncatdog train --model transfer \\\n  --epochs 3\n```\n" \
           "and `catdog serve runs/transfer` inline"
    assert shell_commands(text) == [["make", "run"], ["catdog", "train", "--model", "transfer", "--epochs", "3"]]
    assert inline_commands(text) == [["catdog", "serve", "runs/transfer"]]
    assert inline_commands("`catdog evaluate` and `catdog data info`") == []  # commands named, not run
    assert parse_error(["train", "--model", "transfer", "--epohcs", "3"]) is not None  # a typo is caught


@pytest.mark.parametrize(("page", "argv"), COMMANDS, ids=[f"{p}: {' '.join(a)}"[:90] for p, a in COMMANDS])
def test_every_documented_command_parses_as_written(page, argv):
    from catdog.models import PRESETS

    assert parse_error(argv) is None, f"{page}: catdog {' '.join(argv)}: {parse_error(argv)}"
    for option in ("--model", "--models"):  # the parser leaves the presets to catdog: check them here
        if option in argv:
            named = argv[argv.index(option) + 1].split(",")
            assert set(named) <= set(PRESETS), f"{page}: catdog {' '.join(argv)}: no preset {named}"


def test_every_documented_make_target_and_script_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
    for page in PAGES:
        for words in shell_commands(page.read_text()):
            if words[0] == "make":
                assert set(words[1:2]) <= targets, f"{page.name}: make {words[1]}"
            if words[0] in ("python", "python3") and words[1].endswith(".py"):
                assert (REPO / words[1]).is_file(), f"{page.name}: {words[1]}"


# The documented commands quick enough to run in the tests: they read the shared photos, or nothing.
QUICK = (["models"], ["data", "info"], ["data", "split"], ["data", "show"])


@pytest.mark.slow
def test_the_quick_documented_commands_run_as_written(reference_data, tmp_path, monkeypatch, capsys):
    """In a fresh clone's place: `../shared` beside it, as the pages assume."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (tmp_path / "shared").symlink_to(reference_data.parents[1])
    monkeypatch.chdir(clone)
    quick = [argv for _, argv in COMMANDS if any(argv[:len(q)] == q for q in QUICK)]
    assert len(quick) >= 6
    for argv in quick:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"catdog {' '.join(argv)}: {captured.err}"
        assert captured.out.strip(), f"catdog {' '.join(argv)} printed nothing"


def test_the_python_api_page_imports_what_exists():
    for page in PAGES:
        for block in fenced_blocks(page.read_text(), "python"):
            imports = "\n".join(line for line in block.splitlines() if line.startswith(("from ", "import ")))
            exec(compile(imports, str(page), "exec"), {})


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_leads_somewhere():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"\w+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                assert anchor in {slug(h) for h in headings}, f"{page.name}: {target}"


def test_the_guide_has_one_page_per_topic_and_the_readme_links_each():
    readme = (REPO / "README.md").read_text()
    for topic in GUIDE:
        assert (REPO / "docs" / f"{topic}.md").is_file(), topic
        assert f"](docs/{topic}.md)" in readme, topic


def test_the_readme_first_screen_says_how_long_how_to_call_catdog_and_where_the_report_is():
    first = "\n".join((REPO / "README.md").read_text().splitlines()[:40])
    assert "make run" in first and "make test" in first
    assert "25 minutes" in first  # the main job's time
    assert ".venv/bin/catdog" in first and "`PATH`" in first
    assert "runs/exercise-<date>-<time>/report.html" in first
    assert ".venv/bin/catdog serve runs/exercise-*/" in first  # the next command, on a path make run writes


# Help ------------------------------------------------------------------------------------------


def help_of(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return out.getvalue()


def test_catdog_help_starts_with_three_examples_and_lists_the_commands_in_the_order_of_the_work():
    text = help_of()
    lines = text.splitlines()
    assert lines[2] == "start here:"
    examples = [line.split()[1] for line in lines[3:9] if line.startswith("  catdog ")]
    assert examples == ["run", "serve", "train"]
    listed = re.findall(r"^    (\w+) ", text.split("commands:")[1], re.M)
    assert listed == list(COMMAND_MODULES) and listed[0] == "run"


def test_train_help_lists_the_presets_and_keeps_advanced_options_apart():
    from catdog.models import PRESETS

    text = help_of("train")
    presets = text.split("presets (`catdog models` describes them):")[1].split("\n\n")[0]
    assert [line.split()[0] for line in presets.strip().splitlines()] == list(PRESETS)
    advanced = text.split("advanced: how it trains, and where:")[1]
    for option in ("--strategy", "--xla", "--ood-rate", "--ood-method", "--views", "--end-to-end", "--precision",
                   "--learning-rate"):
        assert f"  {option}" in advanced and f"  {option}" not in text.split("advanced:")[0], option


def parsers(parser: argparse.ArgumentParser, name: str = "catdog"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from parsers(sub, f"{name} {command}")


def test_every_default_is_stated_once_and_correctly():
    for name, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            text = " ".join(formatter._expand_help(action).split())
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert len(re.findall(r"\bdefault", text)) <= 1, f"{where}: {text}"
            value = action.default
            if value not in (None, False, [], argparse.SUPPRESS) and not isinstance(action, argparse._VersionAction):
                assert "default" in text, f"{where} has a default ({value!r}) its help does not state"
                stated = re.search(r"\(default: ([^;)]+)\)", text)
                if stated and isinstance(value, str | int | float):
                    assert stated.group(1) == str(value), f"{where}: says {stated.group(1)}, is {value!r}"


def test_predict_help_says_auto_prefers_openvino_then_onnx():
    from catdog.formats import AUTO_PREFERENCE

    assert AUTO_PREFERENCE == ("openvino", "onnx")
    assert "auto prefers openvino, then onnx" in " ".join(help_of("predict").split())
