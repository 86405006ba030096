"""Reading an XTuner Python config as data, without running a line of it. Torch-free.

An XTuner config is a Python module that imports XTuner, torch and transformers and builds
nested ``dict(type=..., ...)`` values. This module parses it with ``ast`` and evaluates
only what can be known without importing anything: literals, names assigned earlier in the
file, simple arithmetic, containers, ``dict(...)`` and ``X(...)`` calls (both kept as a
:class:`Mapping` whose ``type`` is the callee), attribute names of imports
(``PROMPT_TEMPLATE.internlm2_chat`` is a :class:`Ref`) and ``a if test else b``. Anything
else is an :class:`Opaque` holding its source text, so a reader can say what it skipped.

Every value is a :class:`Val` that remembers its line and the top-level name it was read
through, so whoever maps it can tell which settings it used and name the rest by line.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

# Arithmetic stays cheap whatever the file holds: no huge powers, no huge texts or lists.
MAX_EXPONENT = 64
MAX_ITEMS = 10_000
SHOWN = 60  # characters of source echoed for a value


@dataclass(frozen=True)
class Ref:
    """A name that comes from an import or a ``def`` (``torch.float16``, ``alpaca_map_fn``)."""

    dotted: str

    @property
    def last(self) -> str:
        return self.dotted.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Opaque:
    """An expression this reader does not compute (a function call result, a comprehension...)."""

    source: str


@dataclass
class Val:
    value: Any          # a literal, Ref, Opaque, Mapping, or a list / tuple of Val
    line: int
    source: str         # the expression as written, on one line, cut to SHOWN characters
    via: str = ""       # the top-level name it was read through, if any
    also: tuple[tuple[str, int], ...] = ()  # settings it was copied from (`b = a`: reading b uses a)

    def settings(self) -> tuple[tuple[str, int], ...]:
        """The top-level assignments (name, line) this value was read through."""
        return (((self.via, self.line),) if self.via else ()) + self.also


@dataclass
class Mapping:
    """``dict(k=v, ...)``, ``{'k': v}`` or a call ``X(k=v)`` (then ``type`` is ``X``)."""

    items: dict[str, Val] = field(default_factory=dict)
    args: list[Val] = field(default_factory=list)

    def type_name(self) -> str:
        t = self.items.get("type")
        return t.value.last if t is not None and isinstance(t.value, Ref) else ""


@dataclass
class Module:
    """The top-level names of a config, in the order they were last assigned."""

    names: dict[str, Val]
    defs: dict[str, int]   # functions and classes defined in the file -> line


def read_module(text: str, where: str) -> Module:
    """Evaluate the top level of a config's text; ``where`` names the file in errors."""
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as e:
        raise ConfigError(f"{where}:{e.lineno or 1}: not valid Python ({e.msg})",
                          "fix the line, or give the config `xtuner copy-cfg` wrote") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise ConfigError(f"{where}:1: cannot be read as Python ({type(e).__name__})",
                          "give a plain XTuner config") from None
    reader = _Reader(text)
    try:
        reader.statements(tree.body)
    except RecursionError:
        raise ConfigError(f"{where}:1: nested too deeply to read", "give a plain XTuner config") from None
    return Module(reader.names, reader.defs)


def plain(val: Val | None) -> Any:
    """The value with its bookkeeping stripped: lists, tuples and dicts of plain values."""
    if val is None:
        return None
    v = val.value
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items.items()}
    return v


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not}


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Reader:
    def __init__(self, text: str):
        self.lines = [line.encode("utf-8") for line in text.splitlines()]
        self.names: dict[str, Val] = {}
        self.defs: dict[str, int] = {}
        self.refs: dict[str, Ref] = {}  # imported names

    # ------------------------------------------------------------------ statements
    def statements(self, body: list[ast.stmt]) -> None:
        for node in body:
            self.statement(node)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                self.refs[local] = Ref(a.name if a.asname else local)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                self.refs[a.asname or a.name] = Ref(a.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.defs[node.name] = node.lineno
            self.refs[node.name] = Ref(node.name)
            self.names.pop(node.name, None)
        elif isinstance(node, ast.Assign):
            val = self.expr(node.value)
            for target in node.targets:
                self.assign(target, val, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self.assign(node.target, self.expr(node.value), node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            old = self.names.get(node.target.id)
            if old is not None:
                value = self.binop(type(node.op), old.value, self.expr(node.value).value, node)
                # the setting is still the one named on its own line, now with this change
                self.names[node.target.id] = Val(value, old.line, old.source + " (changed later)",
                                                 node.target.id, old.also)
        elif isinstance(node, ast.If):
            test = self.expr(node.test).value
            if not isinstance(test, (Ref, Opaque, Mapping)):
                self.statements(node.body if test else node.orelse)
        # loops, with, try and bare expressions (docstrings) define no settings we read

    def assign(self, target: ast.expr, val: Val, value_node: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.names[target.id] = Val(val.value, value_node.lineno, self.source(value_node), target.id,
                                        val.settings())
            self.refs.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(val.value, (tuple, list)) \
                and len(val.value) == len(target.elts):
            for t, v in zip(target.elts, val.value):
                self.assign(t, v, value_node)

    # ------------------------------------------------------------------ expressions
    def source(self, node: ast.expr) -> str:
        """The expression as written, on one line and cut to SHOWN characters. Reads only
        the first SHOWN*4 bytes of each line it spans, so a huge file stays cheap."""
        end_line = getattr(node, "end_lineno", None) or node.lineno
        parts = []
        for n in range(node.lineno, min(end_line, node.lineno + 8) + 1):
            line = self.lines[n - 1] if n <= len(self.lines) else b""
            start = node.col_offset if n == node.lineno else 0
            stop = node.end_col_offset if n == end_line and node.end_col_offset is not None else len(line)
            parts.append(line[start:min(stop, start + SHOWN * 4)].decode("utf-8", "replace"))
        text = " ".join(" ".join(parts).split()) or "..."
        return text if len(text) <= SHOWN and end_line <= node.lineno + 8 else text[:SHOWN - 3] + "..."

    def expr(self, node: ast.expr) -> Val:
        value = self.value(node)
        if isinstance(value, Val):  # a name: keep where it was set
            return value
        return Val(value, node.lineno, self.source(node))

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            if node.id in self.refs:
                return self.refs[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            return Opaque(self.source(node))
        if isinstance(node, ast.Attribute):
            base = self.expr(node.value).value
            if isinstance(base, Ref):
                return Ref(f"{base.dotted}.{node.attr}")
            return Opaque(self.source(node))
        if isinstance(node, (ast.List, ast.Tuple)):
            if len(node.elts) > MAX_ITEMS:
                return Opaque(self.source(node))
            items = [self.expr(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            out = Mapping()
            for k, v in zip(node.keys, node.values):
                key = self.expr(k).value if k is not None else None
                if isinstance(key, str):
                    out.items[key] = self.expr(v)
                else:
                    return Opaque(self.source(node))
            return out
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self.binop(type(node.op), self.expr(node.left).value, self.expr(node.right).value, node)
        if isinstance(node, ast.UnaryOp):
            x = self.expr(node.operand).value
            if isinstance(node.op, ast.USub) and _number(x):
                return -x
            if isinstance(node.op, ast.UAdd) and _number(x):
                return x
            if isinstance(node.op, ast.Not) and not isinstance(x, (Ref, Opaque, Mapping)):
                return not x
            return Opaque(self.source(node))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            a, b = self.expr(node.left).value, self.expr(node.comparators[0]).value
            if all(isinstance(x, (int, float, str, bool, type(None))) for x in (a, b)):
                try:
                    return _COMPARE[type(node.ops[0])](a, b)
                except TypeError:
                    pass
            return Opaque(self.source(node))
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test).value
            if isinstance(test, (Ref, Opaque, Mapping)):
                return Opaque(self.source(node))
            return self.expr(node.body if test else node.orelse)
        if isinstance(node, ast.Subscript):
            base, key = self.expr(node.value).value, self.expr(node.slice).value
            if isinstance(base, Mapping) and isinstance(key, str) and key in base.items:
                return base.items[key]
            if isinstance(base, (list, tuple)) and isinstance(key, int) and -len(base) <= key < len(base):
                return base[key]
            return Opaque(self.source(node))
        return Opaque(self.source(node))

    def call(self, node: ast.Call) -> Any:
        func = self.expr(node.func).value
        is_dict = isinstance(func, Opaque) and func.source == "dict"
        if not is_dict and not isinstance(func, Ref):
            return Opaque(self.source(node))
        out = Mapping() if is_dict else Mapping({"type": Val(func, node.lineno, self.source(node.func))})
        out.args = [self.expr(a) for a in node.args]
        for kw in node.keywords:
            if kw.arg is None:  # dict(**base, ...): take base's keys when base is known
                base = self.expr(kw.value).value
                if not isinstance(base, Mapping):
                    return Opaque(self.source(node))
                out.items.update(base.items)
            else:
                out.items[kw.arg] = self.expr(kw.value)
        return out

    def binop(self, op: type, a: Any, b: Any, node: ast.AST) -> Any:
        if isinstance(a, Val):
            a = a.value
        if isinstance(b, Val):
            b = b.value
        shown = Opaque(self.source(node)) if isinstance(node, ast.expr) else Opaque("...")
        if _number(a) and _number(b):
            if op is ast.Pow and (abs(b) > MAX_EXPONENT or abs(a) > 2 ** 64):
                return shown
            if op is ast.Mult and isinstance(a, int) and isinstance(b, int) and \
                    a.bit_length() + b.bit_length() > 256:
                return shown
            try:
                return _BINOPS[op](a, b)
            except (ArithmeticError, ValueError):
                return shown
        same_kind = (isinstance(a, str) and isinstance(b, str)) or \
                    (isinstance(a, list) and isinstance(b, list)) or (isinstance(a, tuple) and isinstance(b, tuple))
        if op is ast.Add and same_kind and len(a) + len(b) <= MAX_ITEMS * 100:
            return a + b
        return shown
