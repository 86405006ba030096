"""What is worth a warning in data that reads fine. Torch-free.

- Unfilled ``{{name}}`` placeholders: LLaMA-Factory's identity set ships answers like
  "I am {{name}}, developed by {{author}}", meant to be filled in first; trained as they
  are, the model introduces itself as "{{name}}".
- Records left out by ``data.skip_invalid`` (``check-data --skip-bad``): how many, and the
  first few by ``file:line``, so a few broken lines in a large set are not a silent loss.
"""

from __future__ import annotations

import re
import shlex

PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_]\w*\s*\}\}")
SKIPPED_SHOWN = 5


class Placeholders:
    """Per source: how many chat records hold ``{{...}}`` placeholders, and which ones."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}
        self.names: dict[str, dict[str, None]] = {}   # ordered sets, in the order first seen

    def see(self, source: str, messages: list[dict]) -> None:
        found = [m for msg in messages for m in PLACEHOLDER.findall(msg["content"])]
        if found:
            self.records[source] = self.records.get(source, 0) + 1
            self.names.setdefault(source, {}).update(dict.fromkeys(found))

    def warnings(self) -> list[str]:
        out = []
        for source, count in self.records.items():
            names = list(self.names[source])
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            edits = "; ".join(f"s/{n}/{_example(n)}/g" for n in names[:5])
            out.append(f"{source}: {count} record{' has' if count == 1 else 's have'} unfilled placeholders "
                       f"{shown}; replace them in the file, e.g. sed -i '{edits}' {shlex.quote(source)}")
        return out


def _example(placeholder: str) -> str:
    return placeholder.strip("{} ").upper()


def skipped_warning(total: int, lines: list[str]) -> str:
    listed = f" (first {len(lines)} listed)" if total > len(lines) else ""
    return f"skipped {total} bad record{'s' if total != 1 else ''}{listed}: " + "; ".join(lines)
