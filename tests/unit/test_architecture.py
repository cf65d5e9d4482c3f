"""Import rules of the package layout (issue 12), checked with ``ast`` over every file of ``maild/``.

Every import counts: module level, inside functions (``import`` or ``from ... import``), and the
string given to ``importlib.import_module`` (a literal argument, or any string literal naming a maild
module in a file that calls ``import_module``, as ``cli/main.py`` does with its ``EXTENSIONS`` tuple).
Nothing is imported or run: the rules read source text only.

Layers, lowest first (a module may import its own layer's package and any lower layer, never a
higher one nor a sibling package of its own layer):

0. base: ``maild`` (version), ``errors``, ``model``, ``message``, ``policy``, ``limits``, ``log``, ``fsutil``,
   ``spool``, ``spool_view``
1. ``protocols`` (sans-I/O wire modules and the POP3/IMAP adapters)
2. ``config`` | ``archive``
3. ``fetch`` | ``move``
4. ``service``
5. ``cli``
6. ``__main__``

Each failure names the file, the line and the import, so the message alone says what to move.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MAILD = Path(__file__).resolve().parents[2] / "maild"
REPO = MAILD.parent

IO_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "ssl",
        "select",
        "selectors",
        "poplib",
        "aioimaplib",
        "aiosqlite",
        "sqlite3",
        "threading",
        "subprocess",
        "concurrent",
    }
)
"""Top-level names whose import means I/O (or threads) in a module that must stay sans-I/O."""

WIRE_MODULES = (
    "maild.protocols.pop3.wire",
    "maild.protocols.pop3.listings",
    "maild.protocols.imap.wire",
    "maild.protocols.imap.lex",
    "maild.protocols.imap.fetch",
    "maild.protocols.imap.fetch_line",
    "maild.protocols.imap.internaldate",
    "maild.protocols.imap.listing",
    "maild.protocols.imap.utf7",
)

AIOIMAPLIB_IMPORTERS = frozenset(
    {
        "maild.protocols.imap.client",  # IMAPClient, the API the rest of maild uses
        "maild.protocols.imap.library",  # the pin, Reply, the library's exceptions translated
        "maild.protocols.imap.protocol",  # the patched IMAP4ClientProtocol and its command subclasses
        "maild.protocols.imap.commands",  # streaming FETCH, STARTTLS, AUTHENTICATE, IDLE
        "maild.protocols.imap.pipeline",  # several tagged commands in one write (RFC 9051 section 5.5)
    }
)
"""The aioimaplib layer: the client split into modules with one job each, nothing else."""

CLI_MAY_IMPORT_FROM_SERVICE = frozenset(
    {
        "maild.service.control_client",  # every command that asks the running daemon
        "maild.service.status",  # the typed records it renders
        "maild.service.oneshot",  # `maild fetch`: the daemon's parts without a daemon
        "maild.service.compact",  # `maild compact`: offline, under the archive lock
        "maild.service.daemon",  # `maild run` starts the daemon itself
    }
)

SQL_START = re.compile(
    r"""^\s*(?:
        SELECT\s.+?\bFROM\b
      | INSERT\s+(?:OR\s+\w+\s+)?INTO\b
      | UPDATE\s+\w+\s+SET\b
      | DELETE\s+FROM\b
      | CREATE\s+(?:TEMP\s+|TEMPORARY\s+|UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b
      | PRAGMA\s+\w+
    )""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
"""An SQL statement's start. ``SELECT`` needs a ``FROM`` so that IMAP's SELECT command (RFC 9051
section 6.3.2) in messages such as ``f"SELECT {mailbox!r}"`` is not taken for SQL."""

BASE = frozenset(
    {
        "maild",
        "maild.errors",
        "maild.model",
        "maild.secret",
        "maild.message",
        "maild.policy",
        "maild.pop3_uidls",
        "maild.waiting",
        "maild.limits",
        "maild.log",
        "maild.fsutil",
        "maild.spool",
        "maild.spool_view",
    }
)
LAYERS: tuple[frozenset[str], ...] = (
    BASE,
    frozenset({"maild.auth"}),  # SASL and OAuth2 tokens: used by protocols and config (issue 13)
    frozenset({"maild.protocols"}),
    frozenset({"maild.config", "maild.archive"}),
    frozenset({"maild.fetch", "maild.move"}),
    frozenset({"maild.service"}),
    frozenset({"maild.cli"}),
    frozenset({"maild.__main__"}),
)

LAYER_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("maild.archive.moves", "maild.move.compare"): (
        "MoveRecords builds move.compare's ArchiveEntry value type from its rows; the type belongs "
        "in model (or archive) so that archive stops importing the move layer"
    ),
}
"""Known upward imports, each with why it is still there; an entry no longer needed fails the run."""


@dataclass(frozen=True)
class Import:
    """One import found in a maild file."""

    importer: str
    path: Path
    line: int
    target: str
    how: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.how} {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _sources() -> dict[str, tuple[Path, ast.Module]]:
    return {
        _module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p)))
        for p in sorted(MAILD.rglob("*.py"))
    }


def _resolve_relative(importer: str, path: Path, level: int, module: str | None) -> str:
    package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _calls_import_module(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def _function_lines(tree: ast.Module) -> set[int]:
    return {
        n.lineno
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }


@functools.cache
def _imports() -> tuple[Import, ...]:
    """Every import of every maild file; ``from a import b`` yields ``a.b`` when that is a module."""
    modules = _sources()
    found: list[Import] = []
    for name, (path, tree) in modules.items():
        local = _function_lines(tree)
        dynamic = any(_calls_import_module(n) for n in ast.walk(tree))
        for node in ast.walk(tree):
            where = "function-level import" if getattr(node, "lineno", None) in local else "import"
            if isinstance(node, ast.Import):
                found += [Import(name, path, node.lineno, alias.name, where) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = (
                    _resolve_relative(name, path, node.level, node.module)
                    if node.level
                    else node.module or ""
                )
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    found.append(Import(name, path, node.lineno, sub if sub in modules else source, where))
            elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in modules or (_is_import_module_argument(tree, node) and text):
                    found.append(Import(name, path, node.lineno, text, "importlib string"))
    return tuple(found)


def _is_import_module_argument(tree: ast.Module, constant: ast.Constant) -> bool:
    return any(_calls_import_module(n) and constant in getattr(n, "args", ())[:1] for n in ast.walk(tree))


def _internal(imp: Import) -> str | None:
    """The maild module an import names, or None for anything outside maild."""
    modules = _sources()
    target = imp.target
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target if target.startswith("maild") and target else None


def _top(imp: Import) -> str:
    """The top-level package an import names (``concurrent`` for ``concurrent.futures``)."""
    return imp.target.split(".")[0]


def _package(module: str) -> str:
    """The layout package a module belongs to (``maild.protocols.imap.wire`` -> ``maild.protocols``)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) not in BASE else module


def _layer(module: str) -> int:
    package = _package(module)
    for rank, members in enumerate(LAYERS):
        if package in members:
            return rank
    raise AssertionError(f"{module}: no layer; add its package to LAYERS in {Path(__file__).name}")


def _report(title: str, offences: list[str]) -> str:
    return f"{title}:\n  " + "\n  ".join(offences)


def _offending(breaks_rule: Callable[[Import], bool]) -> list[str]:
    """Every import that breaks a rule, as ``file:line: how target``."""
    return [str(imp) for imp in _imports() if breaks_rule(imp)]


def _reachable(start: str) -> Iterator[tuple[str, ...]]:
    """Every maild module reachable from ``start`` by imports, with the chain that reaches it."""
    seen = {start}
    queue: list[tuple[str, ...]] = [(start,)]
    while queue:
        chain = queue.pop(0)
        yield chain
        for imp in _imports():
            target = _internal(imp)
            if imp.importer == chain[-1] and target is not None and target not in seen:
                seen.add(target)
                queue.append((*chain, target))


# --- the rules -------------------------------------------------------------------------------------------


def test_the_rules_see_every_kind_of_import() -> None:
    """The scanner finds module-level, function-level and importlib-string imports (else the rules prove nothing)."""
    hows = {imp.how for imp in _imports()}
    assert {"import", "function-level import"} <= hows
    assert any(imp.how == "importlib string" for imp in _imports()) == any(
        _calls_import_module(n) for _, tree in _sources().values() for n in ast.walk(tree)
    )


@pytest.mark.parametrize("module", [m for m in WIRE_MODULES if m in _sources()])
def test_wire_modules_import_no_io(module: str) -> None:
    """A sans-I/O wire module, and every maild module it imports, imports no socket, TLS, thread, event loop or database."""
    offences = [
        f"{imp}  (via {' -> '.join(chain)})" if len(chain) > 1 else str(imp)
        for chain in _reachable(module)
        for imp in _imports()
        if imp.importer == chain[-1] and _top(imp) in IO_MODULES
    ]
    assert not offences, _report(f"{module} must stay sans-I/O", offences)


def test_the_named_wire_modules_exist() -> None:
    """Every wire module the rule names exists, so a rename cannot switch the rule off."""
    missing = [m for m in WIRE_MODULES if m not in _sources()]
    assert not missing


def test_only_the_imap_client_imports_aioimaplib() -> None:
    """aioimaplib (untyped, internals pinned by tests/faults/test_imap_library.py) is imported only by the
    IMAP client's modules (:data:`AIOIMAPLIB_IMPORTERS`)."""
    offences = _offending(lambda imp: _top(imp) == "aioimaplib" and imp.importer not in AIOIMAPLIB_IMPORTERS)
    assert not offences, _report(
        f"only {', '.join(sorted(AIOIMAPLIB_IMPORTERS))} may import aioimaplib", offences
    )


def test_only_the_archive_imports_sqlite() -> None:
    """sqlite3 and aiosqlite are imported only in maild/archive/."""
    offences = _offending(
        lambda imp: _top(imp) in ("sqlite3", "aiosqlite") and _package(imp.importer) != "maild.archive"
    )
    assert not offences, _report("only maild/archive/ may import sqlite3 or aiosqlite", offences)


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
    if isinstance(node, ast.JoinedStr):  # f-string: placeholders as "?"
        return "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)  # type: ignore[misc]
    return None


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))),
    ]
    return {
        id(body[0].value)
        for body in (n.body for n in nodes)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    }


def _sql_literals(module: str) -> Iterator[tuple[int, str]]:
    _, tree = _sources()[module]
    docstrings = _docstrings(tree)
    inside_fstring = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in docstrings or id(node) in inside_fstring:
            continue
        text = _literal_text(node)
        if text is not None and SQL_START.match(text):
            yield node.lineno, text.strip().splitlines()[0][:60]


def test_the_sql_detector_finds_the_archives_sql() -> None:
    """The SQL pattern matches the archive's own statements (a pattern that matches nothing proves nothing)."""
    assert list(_sql_literals("maild.archive.store"))
    assert list(_sql_literals("maild.archive.schema"))


def test_only_the_archive_contains_sql() -> None:
    """No string literal outside maild/archive/ starts an SQL statement (SELECT ... FROM, INSERT, UPDATE, DELETE FROM, CREATE, PRAGMA)."""
    offences = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for module, (path, _) in _sources().items()
        if _package(module) != "maild.archive"
        for line, text in _sql_literals(module)
    ]
    assert not offences, _report("SQL outside maild/archive/", offences)


def test_the_cli_imports_only_the_service_client_modules() -> None:
    """maild/cli/ reaches the daemon only through service.control_client, service.status, service.oneshot
    (and service.compact for the offline `maild compact`)."""
    offences = _offending(
        lambda imp: (
            _package(imp.importer) == "maild.cli"
            and (target := _internal(imp)) is not None
            and _package(target) == "maild.service"
            and target not in CLI_MAY_IMPORT_FROM_SERVICE
        )
    )
    assert not offences, _report(
        f"cli may import from maild.service only {sorted(CLI_MAY_IMPORT_FROM_SERVICE)}", offences
    )


def _import_graph() -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {m: {} for m in _sources()}
    for imp in _imports():
        target = _internal(imp)
        if target is not None and target != imp.importer and target != "maild":
            graph[imp.importer].setdefault(target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The cycle finder reports a two-module cycle and a three-module one, and nothing in a chain."""
    imp = Import("x", MAILD, 1, "y", "import")
    assert _cycles({"a": {"b": imp}, "b": {"a": imp}, "c": {}}) == [["a", "b"]]
    assert _cycles({"a": {"b": imp}, "b": {"c": imp}, "c": {"a": imp}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": imp}, "b": {"c": imp}, "c": {}}) == []


def test_no_import_cycles() -> None:
    """No two maild modules import each other, directly or round a longer loop (function-level and importlib imports included)."""
    graph = _import_graph()
    offences = [
        " <-> ".join(component)
        + "".join(f"\n      {graph[a][b]}" for a in component for b in component if b in graph[a])
        for component in _cycles(graph)
    ]
    assert not offences, _report("import cycles", offences)


def test_no_dynamic_imports() -> None:
    """maild imports nothing by name at run time: importlib is used only for importlib.metadata and
    ``importlib.util.find_spec`` (is an optional extra installed?), never ``import_module``."""
    offences = _offending(
        lambda imp: _top(imp) == "importlib"
        and not imp.target.startswith(("importlib.metadata", "importlib.util"))
    )
    offences += [
        f"{path.relative_to(REPO)}:{node.lineno}: call of {ast.unparse(node.func)}"
        for path, tree in _sources().values()
        for node in ast.walk(tree)
        if _calls_import_module(node)
    ]
    assert not offences, _report("dynamic imports", offences)


def _upward_imports() -> list[tuple[Import, str]]:
    upward = []
    for imp in _imports():
        target = _internal(imp)
        if target is None or _package(target) == _package(imp.importer):
            continue
        importer_rank, target_rank = _layer(imp.importer), _layer(target)
        if target_rank > importer_rank or (target_rank == importer_rank and importer_rank != 0):
            upward.append((imp, target))
    return upward


def test_lower_layers_never_import_higher_ones() -> None:
    """protocols imports no archive/config/fetch/move/service/cli; archive imports no fetch/move/service/cli; and so on up."""
    offences = [
        f"{imp}  (layer {_layer(imp.importer)} {_package(imp.importer)} -> layer {_layer(target)} {_package(target)})"
        for imp, target in _upward_imports()
        if (imp.importer, target) not in LAYER_EXCEPTIONS
    ]
    assert not offences, _report("imports against the layering (see this file's docstring)", offences)


def test_every_layer_exception_is_still_needed() -> None:
    """Each known upward import in LAYER_EXCEPTIONS still exists; delete the entry once the import is gone."""
    used = {(imp.importer, target) for imp, target in _upward_imports()}
    stale = [f"{a} -> {b}" for a, b in LAYER_EXCEPTIONS if (a, b) not in used]
    assert not stale, _report("LAYER_EXCEPTIONS entries no longer needed", stale)


def test_every_module_has_a_layer() -> None:
    """Every maild module belongs to one of the layers, so a new package cannot escape the rules."""
    for module in _sources():
        _layer(module)


# --- the Store and the fetch cycle's parts (session 8) ----------------------------------------------------

STORE_PARTS = {
    "maild.archive.locations": "LocationRecords",
    "maild.archive.batches": "BatchWriter",
    "maild.archive.deliveries": "DeliveryRecords",
    "maild.archive.mailboxes": "MailboxRecords",
    "maild.archive.history": "HistoryRecords",
    "maild.archive.figures": "ArchiveFigures",
    "maild.archive.moves": "MoveRecords",  # held by MigrationStore, the Store of the move commands
}
"""The collaborators :class:`maild.archive.store.Store` holds, each over the connection it is given."""

ANNOTATION_ONLY = {
    "maild.fetch.result": "status, alerts and the one-shot read cycle results without loading the cycle",
}
"""Modules whose maild imports outside ``if TYPE_CHECKING:`` are only base modules, with why."""


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines of imports inside ``if TYPE_CHECKING:`` blocks (for annotations only, never run)."""
    return {
        n.lineno
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in block.body
        for n in ast.walk(statement)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }


def _run_time_imports(module: str) -> list[Import]:
    _, tree = _sources()[module]
    skipped = _type_checking_lines(tree)
    return [imp for imp in _imports() if imp.importer == module and imp.line not in skipped]


def test_the_type_checking_filter_sees_annotation_imports() -> None:
    """The TYPE_CHECKING filter finds the store's annotation-only imports (else the rules below prove nothing)."""
    _, tree = _sources()["maild.archive.store"]
    assert _type_checking_lines(tree)
    assert len(_run_time_imports("maild.archive.store")) < len(
        [imp for imp in _imports() if imp.importer == "maild.archive.store"]
    )


def test_the_store_holds_its_collaborators_and_inherits_from_none() -> None:
    """Store and each of its collaborators is a class of its own (composition): no base classes."""
    offences = []
    for module, name in {"maild.archive.store": "Store", **STORE_PARTS}.items():
        path, tree = _sources()[module]
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
        if not classes:
            offences.append(f"{path.relative_to(REPO)}: no class {name}")
        elif classes[0].bases:
            bases = ", ".join(ast.unparse(b) for b in classes[0].bases)
            offences.append(f"{path.relative_to(REPO)}:{classes[0].lineno}: {name}({bases})")
    assert not offences, _report("the Store is composed, not inherited", offences)


def test_store_collaborators_depend_on_neither_the_store_nor_a_live_connection() -> None:
    """A Store collaborator never imports the Store, and imports the connection only for annotations: it is
    handed one, so a test can build it over a bare ArchiveConnection (tests/unit/test_store_parts.py)."""
    offences = [
        str(imp)
        for module in STORE_PARTS
        for imp in _imports()
        if imp.importer == module and _internal(imp) == "maild.archive.store"
    ]
    offences += [
        f"{imp}  (at run time)"
        for module in STORE_PARTS
        for imp in _run_time_imports(module)
        if _internal(imp) == "maild.archive.connection"
    ]
    assert not offences, _report("Store collaborators import the Store or the live connection", offences)


@pytest.mark.parametrize("module", sorted(ANNOTATION_ONLY))
def test_annotation_only_modules_import_only_base_modules_at_run_time(module: str) -> None:
    """The modules of ANNOTATION_ONLY import, at run time, no maild module beyond the base layer."""
    offences = [
        str(imp)
        for imp in _run_time_imports(module)
        if (target := _internal(imp)) is not None and _package(target) not in BASE
    ]
    assert not offences, _report(f"{module}: {ANNOTATION_ONLY[module]}", offences)
