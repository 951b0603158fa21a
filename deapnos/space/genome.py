"""Genome: update tree + schedule tree + momentum kind + flip, with text and JSON forms.

Provides :class:`Genome` (``parse`` / ``to_text``, ``to_json`` / ``from_json``; text round trips are
exact), :func:`parse_tree`, :func:`tree_text` and :class:`GenomeParseError`.  Both forms are read by
the parser here, never by ``eval``, ``exec``, pickle or DEAP's ``from_string``; a bad token is
reported with its position.  The forms: docs/space.md, "Genome text and JSON".
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from dataclasses import dataclass, field

from deap import gp

from .fold import deap_format, fold
from .psets import MOMENTUM_KINDS, Decay, Schedule, SearchSpace, Tensor, builtin_space

JSON_FORMAT = "deapnos.genome"
JSON_VERSION = 1
MAX_TEXT_CHARS = 20_000
MAX_JSON_CHARS = 100_000          # a genome JSON document is a few hundred characters
MAX_FILE_BYTES = 1 << 20          # genome files are read with this bound (never /dev/zero to the end)
MAX_DEPTH = 64
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|([(),~|=]))")


class GenomeParseError(ValueError):
    """Malformed genome text or JSON.  The message names the bad token and its position."""

    def __init__(self, message: str, position: int | None = None, source: str | None = None):
        self.position = position
        self.source = source
        where = f" at position {position}" if position is not None else ""
        origin = f"{source}: " if source else ""
        super().__init__(f"{origin}{message}{where}")


@dataclass(frozen=True)
class _Tok:
    text: str
    pos: int
    is_name: bool
    bad: bool = False


def _tokenize(text: str, source: str | None) -> list[_Tok]:
    """Split into names and punctuation.  An illegal character becomes a final ``bad`` token, so
    the parser reports whatever is wrong first, in reading order."""
    if len(text) > MAX_TEXT_CHARS:
        raise GenomeParseError(f"genome text is {len(text)} characters, more than {MAX_TEXT_CHARS}",
                               source=source)
    toks, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            where = len(text) - len(text[pos:].lstrip())
            toks.append(_Tok(text[where], where, False, bad=True))
            break
        name, punct = m.group(1), m.group(2)
        start = m.start(1) if name else m.start(2)
        toks.append(_Tok(name or punct, start, bool(name)))
        pos = m.end()
    return toks


class _TreeParser:
    """Recursive descent over prefix expressions, resolving each name by the type expected there."""

    def __init__(self, toks, space: SearchSpace, pset_name: str, source):
        self.toks, self.i, self.space, self.pset_name, self.source = toks, 0, space, pset_name, source

    def peek(self):
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        if tok is not None and tok.bad:
            raise GenomeParseError(f"unexpected character {tok.text!r}", tok.pos, self.source)
        return tok

    def expect(self, text):
        tok = self.peek()
        if tok is None:
            raise GenomeParseError(f"expected {text!r} but the text ended", self._end(), self.source)
        if tok.text != text:
            raise GenomeParseError(f"expected {text!r}, found {tok.text!r}", tok.pos, self.source)
        self.i += 1
        return tok

    def _end(self):
        return self.toks[-1].pos + len(self.toks[-1].text) if self.toks else 0

    def parse(self, ret_type, depth=0) -> list:
        tok = self.peek()
        tname = ret_type.__name__
        if tok is None:
            raise GenomeParseError(f"expected a {tname} expression but the text ended", self._end(),
                                   self.source)
        if not tok.is_name:
            raise GenomeParseError(f"expected a {tname} name, found {tok.text!r}", tok.pos, self.source)
        if depth > MAX_DEPTH:
            raise GenomeParseError(f"expression nested deeper than {MAX_DEPTH}", tok.pos, self.source)
        node = self.space.primitive(self.pset_name, ret_type, tok.text)
        if node is None:
            raise GenomeParseError(f"unknown {tname} name {tok.text!r} (known: "
                                   f"{', '.join(_names(self.space, self.pset_name, ret_type))})",
                                   tok.pos, self.source)
        self.i += 1
        if isinstance(node, gp.Terminal):
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                raise GenomeParseError(f"{tok.text!r} is a leaf and takes no arguments", nxt.pos, self.source)
            return [node]
        out = [node]
        self.expect("(")
        for k, arg_type in enumerate(node.args):
            if k:
                self.expect(",")
            out.extend(self.parse(arg_type, depth + 1))
        nxt = self.peek()
        if nxt is not None and nxt.text == ",":
            raise GenomeParseError(f"{tok.text!r} takes {node.arity} argument(s), found more", nxt.pos,
                                   self.source)
        self.expect(")")
        return out


def _names(space, pset_name, ret_type):
    pset = space.update_pset if pset_name == "update" else space.schedule_pset
    return sorted({n.name for n in pset.terminals.get(ret_type, [])} |
                  {n.name for n in pset.primitives.get(ret_type, [])})


def parse_tree(text: str, kind: str = "update", space: SearchSpace | None = None,
               source: str | None = None) -> gp.PrimitiveTree:
    """Parse one prefix expression: ``kind`` is ``update`` (type Tensor), ``decay`` (Decay inside the
    update set) or ``schedule``."""
    space = (space or builtin_space()).build()
    ret, pset_name = {"update": (Tensor, "update"), "decay": (Decay, "update"),
                      "schedule": (Schedule, "schedule")}[kind]
    toks = _tokenize(text, source)
    parser = _TreeParser(toks, space, pset_name, source)
    nodes = parser.parse(ret)
    if parser.peek() is not None:
        tok = parser.peek()
        raise GenomeParseError(f"unexpected {tok.text!r} after the end of the expression", tok.pos, source)
    return gp.PrimitiveTree(nodes)


def tree_text(tree: gp.PrimitiveTree) -> str:
    """Prefix text of a tree, as the parser reads it: DEAP's ``str(tree)`` ("" when empty)."""
    return fold(tree, deap_format) if len(tree) else ""


def format_text(momentum: str, update: str, schedule: str, flip: bool) -> str:
    """The one-line text form from its parts (``lr`` only when the schedule is not ``one``)."""
    parts = [f"{momentum} ~ {update}"]
    if schedule != "one":
        parts.append(f"lr = {schedule}")
    if flip:
        parts.append("flip")
    return " | ".join(parts)


@dataclass(eq=False)
class Genome:
    """An optimizer of the search space.

    ``update``: the update direction U as a tree of type Tensor.  ``schedule``: a multiplier of the
    base learning rate, a tree of type Schedule (``one`` for none).  ``momentum``: one of
    :data:`~deapnos.space.psets.MOMENTUM_KINDS`.  ``flip``: step along +U instead of -U.
    """
    update: gp.PrimitiveTree
    schedule: gp.PrimitiveTree
    momentum: str = "none"
    flip: bool = False
    space: SearchSpace = field(default_factory=builtin_space, repr=False, compare=False)

    def __post_init__(self):
        if self.momentum not in MOMENTUM_KINDS:
            raise ValueError(f"momentum kind {self.momentum!r} is not one of {', '.join(MOMENTUM_KINDS)}")
        if self.space is None:  # an untyped caller's explicit None: the built-in space, as the default
            self.space = builtin_space()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_parts(cls, update: str, schedule: str = "one", momentum: str = "none", flip: bool = False,
                   space: SearchSpace | None = None) -> Genome:
        space = (space or builtin_space()).build()
        return cls(parse_tree(update, "update", space), parse_tree(schedule, "schedule", space),
                   momentum, bool(flip), space)

    @classmethod
    def parse(cls, text: str, space: SearchSpace | None = None, source: str | None = None) -> Genome:
        """Read the one-line text form (module docstring)."""
        if not isinstance(text, str):
            raise GenomeParseError(f"genome text must be a string, not {type(text).__name__}", source=source)
        space = (space or builtin_space()).build()
        toks = _tokenize(text, source)
        if len(toks) < 2 or not toks[0].is_name or toks[1].text != "~":
            pos = toks[1].pos if len(toks) > 1 else (toks[0].pos if toks else 0)
            raise GenomeParseError("a genome starts with '<momentum kind> ~', e.g. 'none ~ g'", pos, source)
        kind = toks[0].text
        if kind not in MOMENTUM_KINDS:
            raise GenomeParseError(f"unknown momentum kind {kind!r} (known: {', '.join(MOMENTUM_KINDS)})",
                                   toks[0].pos, source)
        # split the rest at top-level '|'
        # each section with the '|' that ends it (None for the last one)
        sections: list[tuple[list[_Tok], _Tok | None]] = []
        cur: list[_Tok] = []
        for tok in toks[2:]:
            if tok.text == "|":
                sections.append((cur, tok))
                cur = []
            else:
                cur.append(tok)
        sections.append((cur, None))
        update_toks = sections[0][0]
        if not update_toks:
            pos = sections[0][1].pos if sections[0][1] else (toks[1].pos + 1)
            raise GenomeParseError("the update expression after '~' is empty", pos, source)
        update = _parse_section(update_toks, space, "update", Tensor, source)
        schedule, flip, seen = None, False, set()
        for sec, bar in sections[1:]:
            if not sec:
                raise GenomeParseError("empty section after '|'", bar.pos if bar is not None else len(text), source)
            key = sec[0]
            if key.bad:
                raise GenomeParseError(f"unexpected character {key.text!r}", key.pos, source)
            if key.text in seen:
                raise GenomeParseError(f"section {key.text!r} given twice", key.pos, source)
            seen.add(key.text)
            if key.text == "flip" and len(sec) == 1:
                flip = True
            elif key.text == "lr":
                if len(sec) < 3 or sec[1].text != "=":
                    pos = sec[1].pos if len(sec) > 1 else key.pos + 2
                    raise GenomeParseError("expected 'lr = <schedule expression>'", pos, source)
                schedule = _parse_section(sec[2:], space, "schedule", Schedule, source)
            else:
                raise GenomeParseError(f"unknown section {key.text!r} (expected 'lr = ...' or 'flip')",
                                       key.pos, source)
        if schedule is None:
            schedule = parse_tree("one", "schedule", space)
        return cls(update, schedule, kind, flip, space)

    @classmethod
    def from_json(cls, text: str | dict, space: SearchSpace | None = None,
                  source: str | None = None) -> Genome:
        """Read the JSON form (a string or an already-decoded dict)."""
        if isinstance(text, (str, bytes)):
            if len(text) > MAX_JSON_CHARS:
                raise GenomeParseError(f"a genome JSON document of {len(text)} characters, more than "
                                       f"{MAX_JSON_CHARS}: not a genome", source=source)
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise GenomeParseError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                       exc.pos, source) from None
            except RecursionError:
                raise GenomeParseError("JSON nested too deeply to be a genome (a genome document is one "
                                       "object of strings and a boolean)", source=source) from None
            except UnicodeDecodeError as exc:
                raise GenomeParseError(f"not valid UTF-8 JSON: {exc.reason}", exc.start, source) from None
        else:
            data = text
        if not isinstance(data, dict):
            raise GenomeParseError("a genome JSON document must be an object", source=source)
        fmt = data.get("format")
        if fmt != JSON_FORMAT:
            raise GenomeParseError(f"field 'format' must be {JSON_FORMAT!r}, found {fmt!r}", source=source)
        version = data.get("version")
        if type(version) is not int or version != JSON_VERSION:      # not True, not 1.0
            raise GenomeParseError(f"field 'version' is {version!r}; this deapnos reads version "
                                   f"{JSON_VERSION}", source=source)
        # nearest_known and simplified: what the report writes beside a winner (deapnos.identify); not read
        allowed = {"format", "version", "momentum", "flip", "update", "schedule", "name", "text", "note",
                   "nearest_known", "simplified"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise GenomeParseError(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: "
                                   f"{', '.join(sorted(allowed))})", source=source)
        for key, typ in (("momentum", str), ("update", str), ("schedule", str), ("flip", bool)):
            if key not in data:
                raise GenomeParseError(f"missing field {key!r}", source=source)
            if not isinstance(data[key], typ):
                raise GenomeParseError(f"field {key!r} must be a {typ.__name__}, found "
                                       f"{type(data[key]).__name__}", source=source)
        if data["momentum"] not in MOMENTUM_KINDS:
            raise GenomeParseError(f"field 'momentum' is {data['momentum']!r}; allowed: "
                                   f"{', '.join(MOMENTUM_KINDS)}", source=source)
        space = (space or builtin_space()).build()
        update = _parse_field(data["update"], space, "update", source)
        schedule = _parse_field(data["schedule"], space, "schedule", source)
        return cls(update, schedule, data["momentum"], data["flip"], space)

    @classmethod
    def load(cls, path, space: SearchSpace | None = None) -> Genome:
        """Read a genome file: JSON (``.json``, or text starting with ``{``) or the text form."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise GenomeParseError("not a regular file; a genome file is a small JSON or text file",
                                   source=str(path))
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise GenomeParseError(f"cannot read genome file: {exc.strerror}", source=str(path)) from None
        if len(raw) > MAX_FILE_BYTES:
            raise GenomeParseError(f"larger than {MAX_FILE_BYTES} bytes; a genome file is a small JSON or text "
                                   f"file", source=str(path))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GenomeParseError(f"not UTF-8 text (byte {exc.start}); a genome file is a small JSON or text "
                                   f"file", source=str(path)) from None
        if path.suffix == ".json" or text.lstrip().startswith("{"):
            return cls.from_json(text, space, source=str(path))
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if len(lines) != 1:
            raise GenomeParseError(f"a genome text file holds one genome line, found {len(lines)}",
                                   source=str(path))
        return cls.parse(lines[0], space, source=str(path))

    # -- output ------------------------------------------------------------------------------

    def to_text(self) -> str:
        return format_text(self.momentum, tree_text(self.update), tree_text(self.schedule), self.flip)

    def to_dict(self, name: str | None = None) -> dict:
        data = {"format": JSON_FORMAT, "version": JSON_VERSION, "momentum": self.momentum,
                "flip": self.flip, "update": tree_text(self.update), "schedule": tree_text(self.schedule)}
        if name:
            data["name"] = name
        return data

    def to_json(self, name: str | None = None, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(name), indent=indent)

    def save(self, path, name: str | None = None) -> None:
        Path(path).write_text(self.to_json(name) + "\n", encoding="utf-8")

    def __str__(self) -> str:
        from .render import genome_str
        return genome_str(self)

    def to_latex(self) -> str:
        from .render import genome_latex
        return genome_latex(self)

    def __repr__(self) -> str:
        return f"Genome.parse({self.to_text()!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Genome) and self.to_text() == other.to_text()

    def __hash__(self) -> int:
        return hash(self.to_text())

    def copy(self) -> Genome:
        return Genome(gp.PrimitiveTree(list(self.update)), gp.PrimitiveTree(list(self.schedule)),
                      self.momentum, self.flip, self.space)

    # -- state -------------------------------------------------------------------------------

    def state_needed(self) -> list[str]:
        """Per-parameter state this genome allocates: EMA slots its operands read, one slot per
        stateful op, and ``M`` for momentum kinds."""
        space = self.space
        slots: list[str] = []
        stateful: list[str] = []
        for node in self.update:
            if isinstance(node, gp.Terminal) and node.ret is Tensor:
                slots.extend(s for s in space.operands[node.name].states if s not in slots)
            elif node.ret is Tensor and node.name in space.unary and "state" in space.unary[node.name].needs:
                stateful.append(f"{node.name}#{len(stateful) + 1}")
        return slots + stateful + (["M"] if self.momentum != "none" else [])


def _parse_section(toks, space, kind, ret_type, source):
    pset_name = "schedule" if kind == "schedule" else "update"
    parser = _TreeParser(toks, space, pset_name, source)
    nodes = parser.parse(ret_type)
    extra = parser.peek()
    if extra is not None:
        raise GenomeParseError(f"unexpected {extra.text!r} after the end of the {kind} expression",
                               extra.pos, source)
    return gp.PrimitiveTree(nodes)


def _parse_field(text, space, kind, source):
    try:
        return parse_tree(text, kind, space, source=None)
    except GenomeParseError as exc:
        origin = f"{source}: " if source else ""
        raise GenomeParseError(f"{origin}field {kind!r}: {exc}") from None
