"""The layering stays plain: models, data and methods at the bottom with helper's errors and
distributed helpers; run storage (helper/runs) above them; the training engine (helper/engine)
above that; launching (helper/launch) and tools (helper/tools) on top, the scripts last. Every
import, function-level ones included, points down or sideways, and none goes round in a circle."""
import ast
import glob
import os

from conftest import ROOT

LOWER = ('models', 'crd', 'dataset', 'distiller_zoo')
LEAVES = {'helper.errors', 'helper.dist'}
LAYERS = {'helper.runs': 1, 'helper.engine': 2, 'helper.launch': 3, 'helper.tools': 4}


def project_modules():
    found = {}
    for path in glob.glob(os.path.join(ROOT, '**', '*.py'), recursive=True):
        rel = os.path.relpath(path, ROOT)
        if rel.split(os.sep)[0] in ('.venv', 'tests', 'data', 'save') or '__pycache__' in rel:
            continue
        name = rel[:-3].replace(os.sep, '.')
        found[name[:-len('.__init__')] if name.endswith('.__init__') else name] = path
    return found


def imported_modules(path, name, modules):
    """Project modules `path` imports anywhere in it (module or function level)."""
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f'{base}.{alias.name}' for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition('.')[0]
            if target and target != name:
                yield target


def graph():
    modules = project_modules()
    return {name: set(imported_modules(path, name, modules)) for name, path in modules.items()}


def layer(name):
    """0 for the bottom (models, data, methods, helper's leaves), 1-4 for helper's layers, 5 for scripts."""
    if name.split('.')[0] in LOWER or name in LEAVES or name == 'helper':
        return 0
    for prefix, level in LAYERS.items():
        if name == prefix or name.startswith(prefix + '.'):
            return level
    return 5


def test_every_import_points_down_or_sideways():
    upward = sorted((a, b) for a, deps in graph().items() for b in deps if layer(b) > layer(a))
    assert not upward


def test_no_import_circles():
    edges = graph()
    seen, on_path, circles = set(), [], []

    def visit(node):
        if node in on_path:
            circles.append(on_path[on_path.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        on_path.pop()
    for node in sorted(edges):
        visit(node)
    assert not circles


def test_helper_has_its_layers_as_folders():
    for prefix in LAYERS:
        assert os.path.isfile(os.path.join(ROOT, *prefix.split('.'), '__init__.py')), prefix
    loose = [os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'helper', '*.py'))]
    assert sorted(loose) == ['__init__.py', 'dist.py', 'errors.py']


def test_leaves_import_nothing_of_the_project():
    g = graph()
    assert not [(leaf, dep) for leaf in LEAVES for dep in g[leaf]]


def test_no_function_over_80_lines():
    long = []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f'{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines')
    assert not long
