"""The layering stays plain: the lower layers import nothing of the engine but its leaf."""
import ast
import glob
import os

from conftest import ROOT

LOWER = ('models', 'crd', 'dataset', 'distiller_zoo')
LEAVES = {'helper.errors'}


def imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_lower_layers_import_only_the_engines_leaves():
    offenders = []
    for layer in LOWER:
        for path in glob.glob(os.path.join(ROOT, layer, '*.py')):
            for module in imported_modules(path):
                if (module == 'helper' or module.startswith('helper.')) and module not in LEAVES:
                    offenders.append(f'{os.path.relpath(path, ROOT)} imports {module}')
    assert not offenders


def test_leaves_import_nothing_of_the_project():
    for leaf in LEAVES:
        path = os.path.join(ROOT, *leaf.split('.')) + '.py'
        project = {'models', 'crd', 'dataset', 'distiller_zoo', 'helper'}
        assert not [m for m in imported_modules(path) if m.split('.')[0] in project]
