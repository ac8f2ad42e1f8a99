"""The README and docs/ keep their promises: every relative link resolves (files and #anchors),
every command named in a shell block (or an inline `make ...`, `tricolor ...`,
`python -m ...` span) exists: `--help` of each tricolor subcommand, Python module and
repository script runs, each make target is in the Makefile, each repository path is there.
The README stays a front page, each page starts with its command, and no sentence is said in
two places."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tricolor.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
INLINE_COMMAND = re.compile(
    r"^(?:make [a-z]|(?:\.venv/bin/)?tricolor [a-z]|\S*python3? (?:-m \w|\S+\.py))"
)
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")", "{", "}", ";;"}
# top-level folders: a command's argument under one of them names a file that must exist
REPOSITORY_DIRS = {p.name for p in PROJECT_ROOT.iterdir() if p.is_dir() and p.name[0] != "."}
PYTHONS = {"python", "python3"}


def relative(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def without_code(text: str) -> str:
    """Prose only: fenced blocks blanked (line numbers kept), inline code dropped."""
    text = FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(title) for title in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail into docs/"
    for page in PAGES:
        assert f"(docs/{page.name})" in README.read_text(), f"README links to no {page.name}"
    assert "(docs/ui.png)" in README.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_page_starts_with_the_command_that_does_the_job(page: Path) -> None:
    text = page.read_text()
    first_fence = FENCE.search(text)
    first_section = re.search(r"^## ", text, re.MULTILINE)
    assert text.startswith("# "), f"{page.name} starts with no title"
    assert first_fence and first_fence.group(1).strip() in SHELL_BLOCKS, page.name
    assert first_section is None or first_fence.start() < first_section.start(), (
        f"{page.name}: its first section comes before its first command"
    )


def links() -> list[tuple[Path, str]]:
    return [
        (document, target)
        for document in DOCUMENTS
        for target in LINK.findall(without_code(document.read_text()))
        if not re.match(r"[a-z]+:", target)
    ]


@pytest.mark.parametrize(
    ("document", "target"), links(), ids=lambda value: getattr(value, "name", value)
)
def test_every_relative_link_resolves(document: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (document.parent / file_part).resolve() if file_part else document
    assert linked.exists(), f"{relative(document)}: {target} points at no file"
    assert linked.is_relative_to(PROJECT_ROOT), f"{relative(document)}: {target} leaves the repo"
    if anchor:
        assert linked.suffix == ".md", f"{relative(document)}: {target}: anchor into a non-page"
        assert anchor in anchors(linked), (
            f"{relative(document)}: {target}: no heading makes #{anchor} in {relative(linked)}; "
            f"there are {sorted(anchors(linked))}"
        )


def shell_lines(text: str) -> list[str]:
    """Command lines of the shell blocks (`$ ` lines of a transcript), continuations joined,
    and the inline spans that name a command."""
    lines: list[str] = []
    for language, body in FENCE.findall(text):
        language = language.strip()
        raw = body.splitlines()
        if any(line.startswith("$ ") for line in raw):
            raw = [line[2:] for line in raw if line.startswith("$ ")]
        elif language not in SHELL_BLOCKS:
            continue
        pending = ""
        for line in raw:
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
            elif pending.endswith(("|", "&&")):
                pending += " "
            else:
                lines.append(pending)
                pending = ""
    lines += [span for span in INLINE_CODE.findall(text) if INLINE_COMMAND.match(span)]
    return lines


def simple_commands(line: str) -> list[list[str]]:
    """One shell line -> its simple commands' words (environment assignments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token in OPERATORS:
            commands.append(words)
            words = []
        elif words or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
            words.append(token)
    commands.append(words)
    return [words for words in commands if words]


@dataclass(frozen=True)
class Named:
    """What a command names that can be checked here."""

    kind: str  # help | make | path
    what: tuple[str, ...]


def python_of(word: str) -> str:
    """A venv's interpreter as named (`.venv-export/bin/python`), else the serving venv's."""
    if "/" in word and (PROJECT_ROOT / word).exists():
        return str(PROJECT_ROOT / word)
    return sys.executable


def named(words: list[str]) -> list[Named]:
    program, arguments = words[0], words[1:]
    found = [
        Named("path", (word,))
        for word in arguments
        if "/" in word and word.split("/")[0] in REPOSITORY_DIRS and not re.search(r"[<>*$]", word)
    ]
    base = Path(program).name
    if base == "make":
        found += [Named("make", (word,)) for word in arguments if not word.startswith("-")]
        found = [entry for entry in found if "=" not in entry.what[0]]
    elif base == "tricolor":
        command = arguments[:1] if arguments and not arguments[0].startswith("-") else []
        tricolor = str(Path(sys.executable).parent / "tricolor")
        found.append(Named("help", (tricolor, *command)))
    elif base in PYTHONS or re.fullmatch(r"python3?(\.\d+)?", base):
        python = python_of(program)
        if arguments[:1] == ["-m"] and re.fullmatch(r"\w+(\.\w+)*", "".join(arguments[1:2])):
            found.append(Named("help", (python, "-m", arguments[1])))
        elif arguments and arguments[0].endswith(".py") and "/" in arguments[0]:
            found.append(Named("help", (python, arguments[0])))
    return found


def everything_named() -> list[tuple[str, Named]]:
    seen: dict[Named, str] = {}
    for document in DOCUMENTS:
        for line in shell_lines(document.read_text()):
            for words in simple_commands(line):
                for entry in named(words):
                    seen.setdefault(entry, f"{relative(document)}: {line}")
    return [(where, entry) for entry, where in seen.items()]


def make_targets() -> set[str]:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set()
    for names in re.findall(r"^([A-Za-z0-9_.\-/ ]+?)\s*:(?![=:])", makefile, re.MULTILINE):
        targets.update(names.split())
    return targets


def test_the_pages_name_commands_of_every_kind() -> None:
    kinds = {entry.kind for _, entry in everything_named()}
    assert kinds == {"help", "make", "path"}, kinds


@pytest.mark.parametrize(
    ("where", "entry"), everything_named(), ids=lambda value: " ".join(getattr(value, "what", ()))
)
def test_every_named_command_exists(where: str, entry: Named) -> None:
    if entry.kind == "make":
        assert entry.what[0] in make_targets(), f"{where}: no make target {entry.what[0]}"
    elif entry.kind == "path":
        assert (PROJECT_ROOT / entry.what[0]).exists(), f"{where}: no {entry.what[0]}"
    else:
        result = subprocess.run(
            [*entry.what, "--help"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{where}: --help exits {result.returncode}\n{result.stderr}"
        assert "usage:" in result.stdout, f"{where}: --help prints no usage\n{result.stdout}"


def sentences(document: Path) -> set[str]:
    prose = re.sub(r"\s+", " ", without_code(document.read_text()))
    return {
        sentence.strip()
        for sentence in re.split(r"(?<=[.:;])\s+|\s*\|\s*|^- ", prose)
        if len(sentence.strip()) >= 60
    }


def test_nothing_is_said_twice() -> None:
    said: dict[str, Path] = {}
    twice = []
    for document in DOCUMENTS:
        for sentence in sentences(document):
            if sentence in said:
                twice.append(f"{relative(said[sentence])} and {relative(document)}: {sentence}")
            said.setdefault(sentence, document)
    assert twice == []
