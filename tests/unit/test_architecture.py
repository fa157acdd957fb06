"""The house's "never" rules (../shared/design/architecture.md, docs/decisions.md "Layers"), read from the source.

Every import statement counts, wherever it stands (module level, inside a function, under TYPE_CHECKING):
a lazy import still ties the layers together. The source is parsed, not imported, so the test takes well
under a second and cannot be fooled by import side effects.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: our top-level packages; anything else imported is a library
OURS = frozenset({"kernel", "drivers", "buffer", "gateway", "hil", "tests", "bench"})
PRODUCTION = ("kernel", "drivers", "buffer", "gateway")

#: what each top-level package may import of ours (itself included); tests/ and bench/ may import anything
ALLOWED = {
    "kernel": {"kernel"},
    "drivers": {"kernel", "drivers"},
    "buffer": {"kernel", "buffer"},
    "gateway": {"kernel", "drivers", "buffer", "gateway"},
    "hil": {"kernel", "drivers", "buffer", "gateway", "hil"},
}

#: imports against the table that are allowed anyway, as (file, top-level package): none. The last one,
#: gateway/demo.py importing hil/, ended when the demo moved into hil/ (docs/decisions.md, "Layers").
EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()
#: the one place production code names the harness: `gateway demo` runs it by name when it is installed
HARNESS_BY_NAME = {("gateway/cli/demo.py", "hil.demo_cli")}

#: modules under drivers/ that do I/O (transports, the glue around a codec, on-disk state); every other
#: module there is a sans-I/O codec: bytes or registers in, readings and events out
DRIVER_IO_MODULES = {
    "drivers/lora/forwarder.py",
    "drivers/lora/lorawan/state.py",
    "drivers/lora/modem/driver.py",
    "drivers/modbus/bus.py",
    "drivers/modbus/link.py",
    "drivers/serial/driver.py",
    "drivers/serial/polling.py",
    "drivers/serial/transport.py",
}
#: the pure packages of the data path besides the codecs (rule 3)
PURE_PACKAGES = ("gateway/wire", "gateway/aggregation")
#: what a codec or a pure module never imports: the event loop, ports, sockets, the disk, the clock
IMPURE = frozenset({"asyncio", "serial", "serial_asyncio_fast", "socket", "sqlite3", "time", "os"})
#: what the pure packages never call: pathlib and builtin file access (a key file is read in gateway/public_key_files.py)
FILE_ACCESS = frozenset(
    {"open", "read_bytes", "read_text", "write_bytes", "write_text", "glob", "rglob", "iterdir", "is_dir",
     "is_file", "exists", "stat", "mkdir", "unlink", "rename", "touch"}
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository, with "/"
    line: int
    module: str  # absolute dotted name

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def _modules(node: ast.AST, package: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing module's package
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            yield ".".join([*base, node.module] if node.module else base)
        elif node.module:
            yield node.module


def imports_of(folder: str) -> list[Import]:
    found = []
    for file in sorted((ROOT / folder).rglob("*.py")):
        rel = file.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        tree = ast.parse(file.read_text(encoding="utf-8"), str(rel))
        for node in ast.walk(tree):
            found += [Import(rel.as_posix(), node.lineno, m) for m in _modules(node, package)]
    return found


def _ours(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.top in OURS]


def test_each_package_imports_only_the_layers_below_it() -> None:
    broken = [
        str(i)
        for package, allowed in ALLOWED.items()
        for i in _ours(imports_of(package))
        if i.top not in allowed and (i.path, i.top) not in EXCEPTIONS
    ]
    assert broken == [], "imports against docs/decisions.md 'Layers':\n" + "\n".join(broken)


def test_the_kernel_holds_the_model_errors_backoff_and_wall_clock() -> None:
    # drivers/ and buffer/ may import only these: they must live below everything, not in gateway/
    for name in ("model", "errors", "backoff", "wallclock"):
        assert (ROOT / "kernel" / f"{name}.py").is_file(), f"kernel/{name}.py"
        assert not (ROOT / "gateway" / f"{name}.py").exists(), f"gateway/{name}.py is back"


def test_production_code_never_imports_the_test_harness_or_the_tests() -> None:
    imports = [i for package in PRODUCTION for i in _ours(imports_of(package))]
    harness = [i for i in imports if i.top in {"hil", "tests", "bench"}]
    broken = [str(i) for i in harness if (i.path, i.top) not in EXCEPTIONS]
    assert broken == [], "production code importing hil/, tests/ or bench/:\n" + "\n".join(broken)
    # an exception that is no longer needed is removed from the list, so it cannot cover a new import
    used = {(i.path, i.top) for i in harness}
    assert used >= EXCEPTIONS, f"stale exceptions: {sorted(EXCEPTIONS - used)}"
    assert not any(i.top == "tests" for i in _ours(imports_of("hil"))), "hil/ imports tests/"


def _harness_names(package: str) -> set[tuple[str, str]]:
    """(file, string) for every string constant in `package` that names a module of hil/ or tests/."""
    found = set()
    for file in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            value = node.value if isinstance(node, ast.Constant) else None
            # a dotted module name, not prose that happens to start with the word
            if (
                isinstance(value, str)
                and value.split(".")[0] in {"hil", "tests"}
                and "." in value.strip(" .")
            ):
                found.add((file.relative_to(ROOT).as_posix(), value))
    return found


def test_production_code_names_the_harness_only_to_run_the_demo() -> None:
    # an import by name (importlib) is still an import: only `gateway demo` may do it, and it must say what
    # to install when the harness is missing (tests/unit/packaging/test_harness_distribution.py)
    named = {hit for package in PRODUCTION for hit in _harness_names(package)}
    assert named == HARNESS_BY_NAME


def test_the_runtime_wheel_leaves_the_harness_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == set(PRODUCTION)
    harness = tomllib.loads((ROOT / "packaging" / "hil" / "pyproject.toml").read_text())
    assert harness["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"] == {"../../hil": "hil"}


def _pure_modules() -> list[str]:
    drivers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "drivers").rglob("*.py"))
    pure = [p for p in drivers if p not in DRIVER_IO_MODULES]
    for folder in PURE_PACKAGES:
        pure += sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*.py"))
    return pure


def test_codecs_wire_and_aggregation_do_no_io_and_read_no_clock() -> None:
    pure = set(_pure_modules())
    assert {"drivers/serial/codec.py", "drivers/lora/gwmp.py", "gateway/wire/batch.py"} <= pure
    missing = [p for p in DRIVER_IO_MODULES if not (ROOT / p).is_file()]
    assert missing == [], f"DRIVER_IO_MODULES names files that are gone: {missing}"
    imports = [i for folder in ("drivers", *PURE_PACKAGES) for i in imports_of(folder) if i.path in pure]
    broken = [str(i) for i in imports if i.top in IMPURE or i.module == "kernel.wallclock"]
    assert broken == [], "I/O or clock in a sans-I/O module (architecture.md rules 1 and 3):\n" + "\n".join(
        broken
    )


def test_wire_and_aggregation_touch_no_file() -> None:
    # rule 3 beyond imports: a Path passed in is read with pathlib, no `import os` needed
    broken = []
    for folder in PURE_PACKAGES:
        for file in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name in FILE_ACCESS:
                        broken.append(f"{file.relative_to(ROOT).as_posix()}:{node.lineno} calls {name}()")
    assert broken == [], "file access in a pure package (architecture.md rule 3):\n" + "\n".join(broken)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path of nodes, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def package_graph() -> dict[str, set[str]]:
    """Top-level package -> the other top-level packages of ours it imports (the listed exceptions left out)."""
    graph: dict[str, set[str]] = {}
    for package in (*PRODUCTION, "hil"):
        graph[package] = {
            i.top
            for i in _ours(imports_of(package))
            if i.top != package and (i.path, i.top) not in EXCEPTIONS
        }
    return graph


def test_no_import_cycle_between_top_level_packages() -> None:
    graph = package_graph()
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the check above must be able to fail: the folder-level cycle of the tree before the kernel
    assert _cycle({"drivers": {"gateway"}, "gateway": {"drivers", "buffer"}, "buffer": set()}) == [
        "drivers",
        "gateway",
        "drivers",
    ]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
