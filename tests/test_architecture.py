"""The house rules of docs/architecture.md, checked on the source: imports point down
the layers and never in a circle, one error helper, files and functions short."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cnn_lab"

# Bottom to top (docs/architecture.md "Layers"): a module imports its own package and
# packages on a lower floor only.
LAYERS = {"errors": 0, "paths": 1, "fetch": 1, "ops": 1, "nn": 2, "losses": 2, "eval": 2,
          "data": 2, "detection": 3, "models": 4, "pretrained": 5, "viz": 5, "style": 6,
          "train": 7, "benchmarks": 8}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(ROOT).with_suffix("").parts
    out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


MODULES = _modules()


def _imports(path: pathlib.Path) -> set[str]:
  """Project modules `path` imports, anywhere in the file (function-local too)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("cnn_lab")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
        node.module.split(".")[0] in ("cnn_lab", "experiments"):
      for alias in node.names:  # `from pkg import submodule` imports the submodule
        sub = f"{node.module}.{alias.name}"
        found.add(sub if sub in MODULES else node.module)
  return found


GRAPH = {name: _imports(path) & set(MODULES) for name, path in MODULES.items()}


def _package(module: str) -> str:
  return module.split(".")[1] if "." in module else ""


def test_every_package_has_a_floor():
  packages = {_package(m) for m in MODULES} - {""}
  assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_imports_point_down_the_layers():
  upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
            if _package(m) and _package(t) != _package(m) and
            LAYERS[_package(t)] > LAYERS[_package(m)]]
  assert not upward, upward
  library = [m for m, path in MODULES.items() if any(
      t.startswith("experiments") for t in _imports(path))]
  assert not library, f"cnn_lab imports experiments: {library}"


def test_no_import_circles():
  """Tarjan's strongly connected components over modules: each must be one module."""
  index, low, stack, on_stack, circles = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in GRAPH[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        circles.append(sorted(component))

  for v in sorted(GRAPH):
    if v not in index:
      visit(v)
  assert not circles, circles


def test_one_error_helper():
  """User errors come from `cnn_lab.errors.fail` (one format); the ops' private checks
  stay inside ops and nn."""
  private = [m for m, path in MODULES.items() if "cnn_lab.ops._checks" in _imports(path)
             and _package(m) not in ("ops", "nn")]
  assert not private, private
  by_hand = re.compile(r'ValueError\(f?"\w+: expected')
  formatted = [str(p.relative_to(ROOT)) for p in MODULES.values()
               if by_hand.search(p.read_text())]
  assert not formatted, formatted


@pytest.mark.parametrize("limit_lines, limit_function", [(300, 60)])
def test_files_and_functions_are_short(limit_lines, limit_function):
  long_files = [f"{p.relative_to(ROOT)} ({n})" for p in MODULES.values()
                if (n := len(p.read_text().splitlines())) > limit_lines]
  long_functions = [
      f"{p.relative_to(ROOT)}:{f.name} ({f.end_lineno - f.lineno + 1})"
      for p in MODULES.values() for f in ast.walk(ast.parse(p.read_text()))
      if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and
      f.end_lineno - f.lineno + 1 > limit_function]
  assert not long_files and not long_functions, (long_files, long_functions)


def test_course_map_points_at_tests_figures_and_commands_that_exist():
  text = (ROOT / "docs" / "course.md").read_text()
  tests = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", text)
  assert len(tests) > 30
  for file, name in tests:
    source = (ROOT / "tests" / file).read_text()
    assert not name or f"def {name}(" in source, f"{file}::{name}"
  for figure in re.findall(r"`(docs/figures/[\w./-]+)`", text):
    assert (ROOT / figure).exists(), figure
  for module in set(re.findall(r"python -m experiments\.(\w+)", text)):
    assert (ROOT / "experiments" / f"{module}.py").exists(), module
  sections = re.findall(r"^\| (\d\.\d+) ", text, re.M)
  assert {"1.1", "1.10", "2.4", "3.10", "4.5", "5.3"} <= set(sections)


def test_the_repository_points_at_no_document_outside_it():
  for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
    assert "../shared" not in path.read_text(), path.name


def test_the_documents_links_and_images_exist():
  """Every relative link or image of README.md and docs/*.md names a file that exists
  (a figure renamed or a document moved leaves no dangling link); anchors not checked."""
  dangling = []
  for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
      file = target.split("#")[0]
      if file and not re.match(r"[a-z]+:", target) and not (path.parent / file).exists():
        dangling.append(f"{path.relative_to(ROOT)}: {target}")
  assert not dangling, dangling
