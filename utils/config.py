"""A script's editable parameter block plus `--name value` overrides → one read-only config.

The block at the top of each script is the single source: its assignments are the defaults,
run in order, so a derived default (`Min_lr = Init_lr * 0.01`) follows an override of what it
derives from. One argparse parser is built from it for every script: a `# ---- Title ----`
comment line starts a section (its following comment lines, up to a blank line, describe it),
and the comment beside or directly above an assignment is that parameter's help.
"""

import argparse
import ast
import difflib
import io
import re
import shutil
import sys
import textwrap
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from utils.errors import UserError

SECTION = re.compile(r"#\s*-{3,}\s*(?P<title>\w.*?)\s*-*\s*$")
MAX_HELP_WIDTH = 100
LITERALS_HELP = ("Values read like the block's Python literals: True/False, numbers, several "
                 'words for a list (--name_classes bg cat dog), "" for an empty text.')


class ConfigError(UserError, ValueError):
    """An unknown parameter name or a value that does not fit its parameter."""


@dataclass(frozen=True)
class Parameter:
    name: str
    source: str  # the default as written in the block, on one line
    help: str
    section: str
    types: frozenset[str] = frozenset()  # from an annotation such as `video_path: int | str`


@dataclass(frozen=True)
class Block:
    path: Path
    description: str
    parameters: list[Parameter]
    sections: dict[str, str]  # title -> description
    statements: list[ast.stmt]


class Config(SimpleNamespace):
    """The resolved settings of one run, in block order; read-only, so every part of the run
    sees the same values. `replace` gives a changed copy."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read-only during a run (tried to set {name}); "
                             "use cfg.replace(...) for a changed copy")

    def replace(self, **changes: Any) -> "Config":
        return Config(**{**vars(self), **changes})


def _comments(source: str) -> dict[int, str]:
    """Line number -> comment text (without `#`) of every comment in the source."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


def _comment_text(comment: str) -> str:
    return comment.lstrip("#").strip()


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _annotation_types(node: ast.AST | None) -> frozenset[str]:
    return frozenset() if node is None else frozenset(
        n.id if isinstance(n, ast.Name) else "None" for n in ast.walk(node)
        if isinstance(n, ast.Name) or (isinstance(n, ast.Constant) and n.value is None))


def read_parameter_block(script: str | Path) -> Block:
    """Parse the parameters of a script: module-level `name = value` lines before the first
    function or class, with their help and section, and the imports their values need."""
    path = Path(script)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines, comments = source.splitlines(), _comments(source)
    is_comment_line = {n for n in comments if lines[n - 1].lstrip().startswith("#")}

    imports, assigns = [], []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If)):
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else node.target if isinstance(node, ast.AnnAssign) and node.value else None
        if (isinstance(target, ast.Name) and not target.id.startswith("_")
                and not target.id.isupper()):
            assigns.append(node)

    sections, section_at = {}, {}  # title -> description; header line -> title
    for number in sorted(is_comment_line):
        match = SECTION.match(comments[number])
        if match:
            description, line = [], number + 1
            while line in is_comment_line and not SECTION.match(comments[line]):
                description.append(_comment_text(comments[line]))
                line += 1
            if line - 1 < len(lines) and lines[line - 1].strip():
                description = []  # no blank line: those comments are the next parameter's help
            sections[match["title"]] = " ".join(d for d in description if d)
            section_at[number] = match["title"]

    def help_for(node: ast.stmt) -> str:
        for number in range(node.lineno, node.end_lineno + 1):
            if number in comments and number not in is_comment_line:
                return _comment_text(comments[number])
        above, line = [], node.lineno - 1
        while line in is_comment_line and line not in section_at:
            above.insert(0, _comment_text(comments[line]))
            line -= 1
        return " ".join(text for text in above if text.strip("-=# "))

    def section_of(node: ast.stmt) -> str:
        headers = [n for n in section_at if n < node.lineno]
        return section_at[max(headers)] if headers else ""

    parameters = []
    for node in assigns:
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target
        value_source = " ".join(ast.get_source_segment(source, node.value).split())
        parameters.append(Parameter(target.id, value_source, help_for(node), section_of(node),
                                    _annotation_types(getattr(node, "annotation", None))))
    used = set().union(*(_names_in(node.value) for node in assigns)) if assigns else set()
    needed = [node for node in imports
              if {(a.asname or a.name).split(".")[0] for a in node.names} & used]
    return Block(path, ast.get_docstring(tree) or "", parameters, sections, needed + assigns)


def _coerce(value: Any, like: Any, types: frozenset[str], word: str) -> Any:
    """`value`, the literal read from `word`, checked against the type of the default `like`
    (or against the annotated `types`)."""
    if types:
        if ("None" if value is None else type(value).__name__) in types:
            return value
        if "str" in types:
            return word
        raise ValueError(f"expected {' or '.join(sorted(types))}, got {word!r}")
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected True or False, got {word!r}")
        return value
    if isinstance(like, (int, float, np.number)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {word!r}")
        # an int default may take a float (weight_decay = 0 -> 1e-4); settings that must be
        # whole numbers are checked by utils.settings
        return float(value) if isinstance(like, (float, np.floating)) else value
    if isinstance(like, str) and not isinstance(value, str):
        return word
    return value


def _literal(word: str) -> Any:
    if word in ('""', "''"):
        return ""
    try:
        return ast.literal_eval(word)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return word


def parse_value(words: Sequence[str], default: Any, types: frozenset[str] = frozenset()) -> Any:
    """Read command-line words like the block's Python literals, typed like the default."""
    if isinstance(default, (list, tuple, np.ndarray)):
        values = [_literal(w) for w in words]
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values, words = list(values[0]), [repr(v) for v in values[0]]
        items = list(default)
        if items and all(type(i) is type(items[0]) for i in items):
            values = [_coerce(v, items[0], frozenset(), w) for v, w in zip(values, words,
                                                                            strict=True)]
        if isinstance(default, np.ndarray):
            return np.asarray(values, dtype=default.dtype)
        return type(default)(values)
    if len(words) != 1:
        raise ValueError(f"expected one value, got {len(words)}: {' '.join(words)}")
    return _coerce(_literal(words[0]), default, types, words[0])


def _metavar(default: Any, types: frozenset[str]) -> str:
    names = {"bool": "{True,False}", "int": "INT", "float": "FLOAT", "str": "TEXT"}
    if types:
        return "|".join(names.get(t, t.upper()) for t in sorted(types))
    if isinstance(default, (list, tuple, np.ndarray)):
        items = list(default)
        return _metavar(items[0], frozenset()) if items else "VALUE"
    if isinstance(default, np.generic):
        default = default.item()
    return names.get(type(default).__name__, "VALUE")


class _Formatter(argparse.HelpFormatter):
    """argparse's help, at most MAX_HELP_WIDTH wide, keeping paragraph breaks of the text."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size((MAX_HELP_WIDTH, 24)).columns, MAX_HELP_WIDTH)
        super().__init__(prog, max_help_position=30, width=width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent,
                                         subsequent_indent=indent) for p in paragraphs if p)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"{message} (see python {self.prog} --help)")


def build_parser(blocks: Sequence[Block], parameters: Sequence[Parameter],
                 defaults: dict[str, Any]) -> argparse.ArgumentParser:
    """One argparse parser for the parameters, grouped by section, with type and default."""
    script = blocks[0].path.name
    parser = _Parser(prog=script, usage=f"python {script} [--name value ...]",
                     description=blocks[0].description, formatter_class=_Formatter,
                     epilog=f"Edit the parameters at the top of {script} or override them here. "
                            + LITERALS_HELP, allow_abbrev=False)
    groups: dict[tuple[Path, str], argparse._ArgumentGroup] = {}
    for block in blocks:
        for parameter in (p for p in parameters if p in block.parameters):
            key = (block.path, parameter.section)
            if key not in groups:
                title = parameter.section or "Parameters"
                if block is not blocks[0]:
                    title = f"{title} ({block.path.name})"
                groups[key] = parser.add_argument_group(title,
                                                        block.sections.get(parameter.section))
            default = defaults[parameter.name]
            listed = isinstance(default, (list, tuple, np.ndarray))
            groups[key].add_argument(
                f"--{parameter.name}", dest=parameter.name, default=argparse.SUPPRESS,
                nargs="+" if listed else "?" if isinstance(default, bool) else None,
                const="True" if isinstance(default, bool) else None,
                metavar=_metavar(default, parameter.types),
                help=f"{parameter.help} (default: {parameter.source})".strip().replace("%", "%%"))
    return parser


def _unknown_error(extras: Sequence[str], valid: Sequence[str]) -> ConfigError:
    word = extras[0]
    if not word.startswith("--"):
        return ConfigError(f"unexpected value {word!r}: give --name value pairs; only a "
                           "parameter whose default is a list takes several values")
    name = word[2:].partition("=")[0]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean --{close[0]}?" if close else ""
    names = textwrap.fill(", ".join(f"--{v}" for v in valid), MAX_HELP_WIDTH - 2,
                          subsequent_indent="  ")
    return ConfigError(f"unknown parameter --{name}.{hint}\nValid parameters: {names}")


def _resolve(blocks: Sequence[Block], overrides: dict[str, list[str]],
             types: dict[str, frozenset[str]]) -> dict[str, Any]:
    """Run the blocks in order, each override replacing its assignment's value."""
    resolved: dict[str, Any] = {}
    for block in blocks:
        namespace: dict[str, Any] = {"__file__": str(block.path)}
        for statement in block.statements:
            exec(compile(ast.Module([statement], []), str(block.path), "exec"), namespace)
            if not isinstance(statement, (ast.Assign, ast.AnnAssign)):
                continue
            target = statement.targets[0] if isinstance(statement, ast.Assign) \
                else statement.target
            name = target.id
            if name in resolved:  # an earlier block (the script's own) defines it: that wins
                namespace[name] = resolved[name]
                continue
            if name in overrides:
                try:
                    namespace[name] = parse_value(overrides[name], namespace[name], types[name])
                except ValueError as error:
                    raise ConfigError(f"--{name}: {error} (default is "
                                      f"{namespace[name]!r})") from None
            resolved[name] = namespace[name]
    return resolved


def load_config(script: str | Path, argv: Sequence[str] | None = None,
                include: Sequence[str | Path] = ()) -> Config:
    """The settings of `script`: its parameter block (plus those of `include`, e.g. unet.py's
    predictor settings for predict.py) with the command-line overrides applied.

    `--help` prints the parameters and exits; unknown names and values that do not fit raise
    ConfigError, naming the valid parameters or the expected value.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    blocks = [read_parameter_block(script),
              *(read_parameter_block(Path(script).with_name(str(p))) for p in include)]
    parameters, seen = [], set()
    for block in blocks:
        for parameter in block.parameters:
            if parameter.name not in seen:
                seen.add(parameter.name)
                parameters.append(parameter)
    types = {p.name: p.types for p in parameters}
    parser = build_parser(blocks, parameters, _resolve(blocks, {}, types))
    given, extras = parser.parse_known_args(argv)
    if extras:
        raise _unknown_error(extras, [p.name for p in parameters])
    overrides = {name: words if isinstance(words, list) else [words]
                 for name, words in vars(given).items()}
    return Config(**_resolve(blocks, overrides, types))
