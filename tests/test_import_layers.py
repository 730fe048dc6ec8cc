"""Dependencies point one way: no import cycle between packages, and the edges depend on the domain, never the
reverse (issue 16). The graph is grimp's, built from the source; imports under ``if TYPE_CHECKING:`` are left
out (they never run), imports inside functions are in (they run, and hiding one there does not break a cycle).
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

# The edges: chat, the aiohttp application, HTTP routes and what they share, the web view, the composition root.
EDGES = ("bot.chat", "bot.web", "bot.web_ui", "bot.httpio", "bot.intake.routes", "bot.change_webhook", "bot.app",
         "bot.cli")
# The domain: what the edges call. It reaches chat only through ``bot.ports.ChatPort`` (and the lifecycle outbox);
# it writes its messages in ``bot.messages``, the platform-neutral model each chat adapter renders.
DOMAIN = ("bot.triage", "bot.investigate", "bot.remediate", "bot.memory", "bot.incidents", "bot.store",
          "bot.context", "bot.ports", "bot.audit", "bot.jobs", "bot.reports", "bot.messages")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bot", "integrations", exclude_type_checking_imports=True, cache_dir=None)


def _packages(g: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in g.modules if g.find_children(m))


def _cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def _example(g: grimp.ImportGraph, a: str, b: str) -> str:
    """One import that makes ``a`` depend on ``b`` (packages included), as ``importer:line -> imported``."""
    for imp in (g.find_matching_direct_imports(import_expression=f"{a} -> {b}")
                + g.find_matching_direct_imports(import_expression=f"{a}.** -> {b}")
                + g.find_matching_direct_imports(import_expression=f"{a} -> {b}.**")
                + g.find_matching_direct_imports(import_expression=f"{a}.** -> {b}.**")):
        details = g.get_import_details(importer=imp["importer"], imported=imp["imported"])
        line = details[0]["line_number"] if details else "?"
        return f"{imp['importer']}:{line} -> {imp['imported']}"
    return f"{a} -> {b}"


def sibling_cycles(g: grimp.ImportGraph) -> list[str]:
    """Every cycle between the children of one package (subpackages and modules), at every level, with one
    import per dependency in the cycle so the message says what to cut."""
    problems = []
    for pkg in _packages(g):
        children = sorted(g.find_children(pkg))
        edges = {a: {b for b in children
                     if a != b and g.direct_import_exists(importer=a, imported=b, as_packages=True)}
                 for a in children}
        for cycle in _cycles(children, edges):
            imports = [_example(g, a, b) for a in cycle for b in sorted(edges[a]) if b in cycle]
            problems.append(f"cycle in {pkg}: {' <-> '.join(cycle)}\n    " + "\n    ".join(imports))
    return problems


def forbidden_imports(g: grimp.ImportGraph, importers: tuple[str, ...], imported: tuple[str, ...]) -> list[str]:
    """Direct imports from any module under ``importers`` to any under ``imported``."""
    problems = []
    for a in importers:
        if a not in g.modules:
            continue
        for b in imported:
            if b not in g.modules or b == a or b.startswith(a + ".") or a.startswith(b + "."):
                continue
            for expr in (f"{a} -> {b}", f"{a}.** -> {b}", f"{a} -> {b}.**", f"{a}.** -> {b}.**"):
                for imp in g.find_matching_direct_imports(import_expression=expr):
                    problems.append(f"{imp['importer']} imports {imp['imported']}")
    return sorted(set(problems))


def test_no_import_cycle_between_packages() -> None:
    problems = sibling_cycles(graph())
    assert not problems, "import cycles (cut the dependency that points the wrong way):\n" + "\n".join(problems)


def test_integrations_never_import_the_edges() -> None:
    problems = forbidden_imports(graph(), ("integrations",), EDGES)
    assert not problems, "integrations import bot's edges:\n" + "\n".join(problems)


def test_the_domain_never_imports_chat_web_or_routes() -> None:
    problems = forbidden_imports(graph(), DOMAIN, EDGES)
    assert not problems, "the domain imports an edge:\n" + "\n".join(problems)


def test_the_message_model_depends_on_nothing_of_onwatch() -> None:
    """The domain and every chat adapter import ``bot.messages``; it stays a leaf so it can sit under both."""
    g = graph()
    outside = sorted(f"{m} imports {i}" for m in g.find_descendants("bot.messages") | {"bot.messages"}
                     for i in g.find_modules_directly_imported_by(m)
                     if i != "bot.messages" and not i.startswith("bot.messages."))
    assert not outside, outside


def test_only_the_composition_root_imports_it() -> None:
    """``bot.app`` wires everything; only the CLI, the demo and the benchmarks (which run an app) import it."""
    g = graph()
    importers = sorted(m for m in g.find_modules_that_directly_import("bot.app"))
    assert all(m.startswith(("bot.cli", "bot.demo", "bot.benchmarks")) for m in importers), importers


@pytest.mark.parametrize(("imports", "expected"), [
    ({"a.x": {"a.y"}, "a.y": {"a.x"}}, ["a.x <-> a.y"]),
    ({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}, ["a.x <-> a.y <-> a.z"]),
    ({"a.x": {"a.y"}, "a.y": {"a.z"}}, []),
])
def test_the_cycle_check_finds_cycles(imports: dict[str, set[str]], expected: list[str]) -> None:
    """The check itself can fail: a graph with a cycle is reported, one without is not."""
    g = grimp.ImportGraph()
    g.add_module("a")
    for m in ("a.x", "a.y", "a.z"):
        g.add_module(m)
    for importer, imported in imports.items():
        for target in imported:
            g.add_import(importer=importer, imported=target, line_number=1, line_contents=f"import {target}")
    found = [p.splitlines()[0].removeprefix("cycle in a: ") for p in sibling_cycles(g)]
    assert found == expected


def test_the_layer_check_finds_a_domain_module_importing_chat() -> None:
    """The check itself can fail: a domain module importing a chat module is reported, one importing
    ``bot.messages`` is not."""
    g = grimp.ImportGraph()
    for m in ("bot", "bot.chat", "bot.chat.hub", "bot.messages", "bot.messages.model", "bot.triage",
              "bot.triage.service", "bot.triage.notify"):
        g.add_module(m)
    g.add_import(importer="bot.triage.service", imported="bot.messages.model", line_number=1,
                 line_contents="from bot.messages.model import Message")
    assert forbidden_imports(g, DOMAIN, EDGES) == []
    g.add_import(importer="bot.triage.notify", imported="bot.chat.hub", line_number=1,
                 line_contents="from bot.chat.hub import ChatHub")
    assert forbidden_imports(g, DOMAIN, EDGES) == ["bot.triage.notify imports bot.chat.hub"]
