"""Turn a script's editable parameter block plus `--name value` overrides into one config.

The block at the top of each script stays the single source of truth: defaults are the
block's own statements, run in order (so `Min_lr = Init_lr * 0.01` follows `--Init_lr`), and
`--help` is generated from the comments written beside or above each assignment.
"""

import ast
import difflib
import io
import sys
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


@dataclass
class Parameter:
    name: str
    source: str  # the default as written in the block
    help: str


class Config(SimpleNamespace):
    """Attribute access to the resolved parameters, in block order."""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _comments_by_line(source: str) -> dict[int, str]:
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _help_for(node: ast.AST, comments: dict[int, str], lines: list[str]) -> str:
    """The trailing comment of an assignment, else the comment directly above it: a whole box
    framed by `# ----` rules, or the last comment sentence (its last line plus the lines above
    that run on into it), so a section's introduction above is left out."""
    for number in (node.lineno, node.end_lineno):  # beside the first or the last line
        if number in comments and lines[number - 1].lstrip()[:1] != "#":
            return comments[number]
    above, line = [], node.lineno - 1

    def is_rule(number: int) -> bool:
        return bool(comments[number]) and not comments[number].strip("-=# ")

    boxed = line in comments and is_rule(line)
    line -= boxed
    while line in comments and lines[line - 1].lstrip().startswith("#"):
        text = comments[line].strip("-=# ")
        if boxed and is_rule(line):
            break
        if not boxed and above and text.endswith((".", "!", "?")):
            break  # a finished sentence above belongs to the section, not this parameter
        if text:
            above.insert(0, text)
        line -= 1
    return " ".join(above)


def _block_nodes(tree: ast.Module) -> tuple[list[ast.stmt], list[ast.Assign]]:
    """Module-level imports and simple `name = value` assignments before the first def/class."""
    imports, assigns = [], []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If)):
            break
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and not node.targets[0].id.startswith("_")
              and not node.targets[0].id.isupper()):
            assigns.append(node)
    return imports, assigns


def read_parameter_block(script: str | Path) -> tuple[list[Parameter], list[ast.stmt]]:
    """Parse a script's parameter block; returns its parameters and the block's statements."""
    source = Path(script).read_text(encoding="utf-8")
    tree = ast.parse(source)
    comments, lines = _comments_by_line(source), source.splitlines()
    imports, assigns = _block_nodes(tree)
    params = [
        Parameter(node.targets[0].id, ast.get_source_segment(source, node.value),
                  _help_for(node, comments, lines))
        for node in assigns
    ]
    return params, imports + assigns


def parse_value(words: Sequence[str], default: Any) -> Any:
    """Read command-line words like the block's Python literals, shaped like the default."""

    def one(word: str) -> Any:
        if word in ('""', "''"):
            return ""
        try:
            return ast.literal_eval(word)
        except (ValueError, SyntaxError):
            return word

    if isinstance(default, (list, tuple, np.ndarray)):
        values = [one(w) for w in words]
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = list(values[0])
        if isinstance(default, np.ndarray):
            return np.asarray(values, dtype=default.dtype)
        return type(default)(values)
    if len(words) != 1:
        raise ValueError(f"expected one value, got {len(words)}: {' '.join(words)}")
    value = one(words[0])
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected True or False, got {words[0]!r}")
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        value = words[0]
    return value


def split_overrides(argv: Sequence[str]) -> dict[str, list[str]]:
    """`--a 1 --b x y` -> {"a": ["1"], "b": ["x", "y"]}; also accepts `--a=1`."""
    overrides: dict[str, list[str]] = {}
    current = None
    for word in argv:
        if word.startswith("--") and len(word) > 2 and not word[2].isdigit():
            name, equals, value = word[2:].partition("=")
            current = name
            overrides[current] = [value] if equals else []
        elif current is None:
            raise SystemExit(f"error: expected --name value pairs, got {word!r}")
        else:
            overrides[current].append(word)
    return overrides


def format_help(script: str, description: str, params: list[Parameter]) -> str:
    width = max(len(p.name) for p in params) + 2
    rows = [f"  --{p.name:<{width}} {p.help}  [default: {' '.join(p.source.split())}]"
            for p in params]
    return "\n".join([f"usage: python {script} [--name value ...]", "", description, "",
                      "Parameters (edit them at the top of the script or override here):", *rows])


def load_config(
    script: str | Path,
    argv: Sequence[str] | None = None,
    extra: dict[str, Any] | None = None,
    extra_help: dict[str, str] | None = None,
) -> Config:
    """Run the parameter block of `script` with command-line overrides applied.

    `extra` adds parameters defined elsewhere (e.g. the predictor's `_defaults` for predict.py).
    Unknown names, malformed values and `--help` exit with a message listing the parameters.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = Path(script)
    params, statements = read_parameter_block(script)
    extra = dict(extra or {})
    params += [Parameter(k, repr(v), (extra_help or {}).get(k, "")) for k, v in extra.items()
               if k not in {p.name for p in params}]
    description = (ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or "")
    if "-h" in argv or "--help" in argv:
        print(format_help(script.name, description, params))
        raise SystemExit(0)

    valid = [p.name for p in params]
    overrides = split_overrides(argv)
    for name in overrides:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean --{close[0]}?" if close else ""
            raise SystemExit(f"error: unknown parameter --{name}.{hint}\n"
                             f"Valid parameters: {', '.join('--' + v for v in valid)}")

    namespace: dict[str, Any] = {"__file__": str(script)}
    resolved: dict[str, Any] = {}

    def override(name: str, default: Any) -> Any:
        if name not in overrides:
            return default
        try:
            return parse_value(overrides[name], default)
        except ValueError as error:
            raise SystemExit(f"error: --{name}: {error} (default is {default!r})") from None

    for statement in statements:
        exec(compile(ast.Module([statement], []), str(script), "exec"), namespace)
        if isinstance(statement, ast.Assign):
            name = statement.targets[0].id
            namespace[name] = resolved[name] = override(name, namespace[name])
    for name, default in extra.items():
        resolved.setdefault(name, override(name, default))
    return Config(**resolved)


def read_dict_help(script: str | Path, dict_name: str) -> dict[str, str]:
    """Trailing comments of the keys of a dict literal `dict_name = {...}` (e.g. `_defaults`)."""
    source = Path(script).read_text(encoding="utf-8")
    comments, lines = _comments_by_line(source), source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == dict_name for t in node.targets)):
            return {key.value: _help_for(key, comments, lines) for key in node.value.keys
                    if isinstance(key, ast.Constant)}
    return {}
