"""A config as commented YAML, the way the presets read: every key with a comment saying
what it does, so a file the wizard writes explains itself like the preset it came from.

Comments come from the preset the config started from where it has one for the key (its
words, e.g. a recipe's own advice), and from the schema's field docs otherwise. Values are
written by the YAML library, one key per line, so the text loads back to the same config.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .config import Config, field_docs, to_dict

COMMENT_COLUMN = 34        # where the presets put their comments


def _comment_start(line: str) -> int:
    """Index of the " #" that starts a line's comment (not one inside quotes), or -1."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return -1


KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):")


def preset_comments(text: str) -> tuple[list[str], dict[str, str]]:
    """(the comment lines at the top, dotted key -> the comment on its line) of a preset."""
    header, comments, path = [], {}, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not comments and not path:
                header.append(stripped)
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        path = path[:depth] + [match.group(2)]
        at = _comment_start(line)
        if at >= 0:
            comments[".".join(path)] = line[at + 1:].strip()
    return header, comments


def _value(value) -> str:
    # A one-element flow list renders any value (scalar, list, mapping) on one line.
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**6).strip()[1:-1]


def _line(indent: int, key: str, value: str, comment: str) -> str:
    text = f"{'  ' * indent}{key}:{' ' + value if value else ''}"
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else text


def commented_yaml(cfg: Config, preset: Path | None = None, command: str = "") -> str:
    """The config as YAML with a comment on every key; ``command`` (the line that runs it)
    and the preset's description go on top."""
    docs = field_docs()
    header, comments = preset_comments(preset.read_text(encoding="utf-8")) if preset else ([], {})
    lines = [f"# {command}"] if command else []
    lines += [h for h in header if not h.startswith("# tunewiz ")]   # its own command is not ours
    if preset is not None:
        lines.append(f"# from the preset {preset.stem}")

    sections = {key.rsplit(".", 1)[0] for key in docs if "." in key}   # keys that hold keys

    def emit(data: dict, prefix: str, indent: int) -> None:
        for key, value in data.items():
            dotted = prefix + key
            comment = comments.get(dotted) or docs.get(dotted, "")
            if isinstance(value, dict) and value and dotted in sections:
                lines.append(_line(indent, key, "", comment))
                emit(value, dotted + ".", indent + 1)
            else:
                lines.append(_line(indent, key, _value(value), comment))

    emit(to_dict(cfg), "", 0)
    return "\n".join(lines) + "\n"
