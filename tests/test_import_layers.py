"""The import graph of ``xdc_plugin/``, ``tools/`` and ``hubconf.py`` is
layered, read from the source with ``ast`` (nothing is imported).

Layers, lowest first (a module may import its own layer or lower ones):

0. ``atomic_write``, ``compat``, ``tables``: standard library and torch only;
1. ``registry``, ``atomic_backend`` (mmengine file I/O) and the package
   root ``xdc_plugin``;
2. ``encoders``, ``weights``: torch-only (see ``TORCH_ONLY``);
3. ``models``, ``data``, ``clustering``, ``probe``;
4. ``engine``, ``evaluation``, ``visualization``;
5. ``tools`` and ``hubconf``.

Which imports count:

* Layering counts every import, also one inside a function: a lazy import
  of a higher layer is still an upward dependency.
* Folders: no two folders import each other (every import counts, lazy
  ones too), such as ``engine/`` and ``evaluation/``, or ``engine/hooks/``
  and ``engine/round/``. A folder holds its subfolders (``engine/``
  holds ``engine/hooks/``), so a pair is two folders neither of which
  holds the other, and it is named at the level where the two diverge: an
  import from ``engine/round/`` into ``evaluation/`` counts for
  ``engine/`` -> ``evaluation/``.
* Cycles count module-level imports only (also those under ``if``/``try``
  and in class bodies, which run at import). An import inside a function
  runs after every module has loaded, which is the standard way to break
  an import-time cycle, so it cannot make one.
* ``from package import name`` depends on ``package.name`` when that is a
  module, else on ``package`` (its ``__init__``). The implicit import of a
  module's parent packages is not an edge: a package's ``__init__``
  importing its own submodules is how packages export them.
* Torch-only modules may import, at module level, the standard library,
  torch, torchvision and torch-only modules of ours; ``xdc_plugin``'s
  ``__init__`` guards its mmengine imports (``test_hubconf.py`` imports
  ``hubconf`` with mmengine unimportable).
"""
import ast
import glob
import importlib.metadata
import os
import os.path as osp
import re
import runpy
import sys

import pytest
import setuptools
from packaging.requirements import Requirement

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
LAYERS = (
    ('foundation', ('xdc_plugin.atomic_write', 'xdc_plugin.compat',
                    'xdc_plugin.tables')),
    ('registry', ('xdc_plugin.registry', 'xdc_plugin.atomic_backend')),
    ('torch-only', ('xdc_plugin.encoders', 'xdc_plugin.weights')),
    ('components', ('xdc_plugin.models', 'xdc_plugin.data',
                    'xdc_plugin.clustering', 'xdc_plugin.probe')),
    ('runtime', ('xdc_plugin.engine', 'xdc_plugin.evaluation',
                 'xdc_plugin.visualization')),
    ('tools', ('tools', 'hubconf')),
)
# The package root imports compat and the registry only (when mmengine is
# there): it sits with the registry.
ROOT_PACKAGE = 'xdc_plugin'
TORCH_ONLY = ('xdc_plugin.atomic_write', 'xdc_plugin.compat',
              'xdc_plugin.tables', 'xdc_plugin.encoders', 'xdc_plugin.weights',
              'hubconf')
TORCH_ONLY_PACKAGES = ('torch', 'torchvision')
# Upward imports with a reason: (importer, imported) -> why. Empty: none.
ALLOWED_UPWARD = {}


def _in(module, prefix):
    return module == prefix or module.startswith(prefix + '.')


def layer_of(module):
    """Index of ``module``'s layer in ``LAYERS``, None for a module outside
    them (a third-party or standard-library one)."""
    if module == ROOT_PACKAGE:
        return 1
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(_in(module, p) for p in prefixes):
            return index
    return None


def find_modules(repo_dir):
    """``{module name: file}`` of ``xdc_plugin/``, ``tools/`` and
    ``hubconf.py`` under ``repo_dir``."""
    modules = {}
    if osp.isfile(osp.join(repo_dir, 'hubconf.py')):
        modules['hubconf'] = osp.join(repo_dir, 'hubconf.py')
    for top in ('xdc_plugin', 'tools'):
        for folder, _, files in os.walk(osp.join(repo_dir, top)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = osp.join(folder, name)
                parts = osp.relpath(path, repo_dir)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                modules['.'.join(parts)] = path
    return modules


def _resolve(node, importer, is_package):
    """Absolute module named by an ``ImportFrom`` (relative ones too)."""
    if not node.level:
        return node.module
    base = importer.split('.')
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return '.'.join(base + ([node.module] if node.module else []))


def imports_of(path, module, known):
    """``[(imported module, line, lazy)]`` of the file ``path`` (module
    ``module``); ``lazy`` when the import is inside a function."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    is_package = osp.basename(path) == '__init__.py'
    found = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inner)
                             for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                source = _resolve(child, module, is_package)
                for alias in child.names:
                    name = f'{source}.{alias.name}'
                    found.append((name if name in known else source,
                                  child.lineno, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def build_graph(repo_dir):
    """``{module: [(imported, line, lazy)]}`` for every module found."""
    modules = find_modules(repo_dir)
    return {m: imports_of(p, m, modules) for m, p in modules.items()}


def upward_imports(graph, allowed=ALLOWED_UPWARD):
    """Imports of a higher layer, as ``'importer:line -> imported'``."""
    bad = []
    for module, imports in sorted(graph.items()):
        own = layer_of(module)
        for name, line, _ in imports:
            other = layer_of(name)
            if (other is not None and own is not None and other > own
                    and (module, name) not in allowed):
                bad.append(f'{module}:{line} ({LAYERS[own][0]}) -> {name} '
                           f'({LAYERS[other][0]})')
    return bad


def _eager_edges(graph):
    return {module: sorted({name for name, _, lazy in imports
                            if not lazy and name in graph and name != module})
            for module, imports in graph.items()}


def import_cycles(graph):
    """Strongly connected components (more than one module) of the
    module-level imports among the modules of ``graph`` (Tarjan)."""
    edges = _eager_edges(graph)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                connect(nxt)
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
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return cycles


def find_packages(repo_dir):
    """The modules of ``find_modules`` that are packages (folders)."""
    return {m for m, path in find_modules(repo_dir).items()
            if osp.basename(path) == '__init__.py'}


def folder_of(module, packages):
    """The folder of ``module``: itself for a package, else its parent
    package ('' at the repository root)."""
    return module if module in packages else module.rpartition('.')[0]


def _diverging(folder, other):
    """The two folders, one holding each of ``folder`` and ``other``, just
    below the deepest folder that holds both; None when one of them holds
    the other."""
    a, b = (f.split('.') if f else [] for f in (folder, other))
    depth = 0
    while depth < min(len(a), len(b)) and a[depth] == b[depth]:
        depth += 1
    if depth in (len(a), len(b)):
        return None
    return '.'.join(a[:depth + 1]), '.'.join(b[:depth + 1])


def folder_imports(graph, packages):
    """``{(folder, imported folder): first import}`` over every import
    (lazy ones too) between modules of ``graph``, the import written as
    ``'importer:line -> imported'``."""
    found = {}
    for module, imports in sorted(graph.items()):
        for name, line, _ in imports:
            if name not in graph:
                continue
            pair = _diverging(folder_of(module, packages),
                              folder_of(name, packages))
            if pair:
                found.setdefault(pair, f'{module}:{line} -> {name}')
    return found


def mutual_folder_imports(graph, packages):
    """Pairs of folders that import each other, with an import each way."""
    found = folder_imports(graph, packages)
    return [f'{a} <-> {b}: {found[a, b]}; {found[b, a]}'
            for a, b in sorted(found) if a < b and (b, a) in found]


def torch_only_violations(graph):
    """Module-level imports of a torch-only module that are neither the
    standard library, torch/torchvision, nor a torch-only module of ours."""
    bad = []
    for module, imports in sorted(graph.items()):
        if not any(_in(module, p) for p in TORCH_ONLY):
            continue
        for name, line, lazy in imports:
            top = name.split('.')[0]
            ours = layer_of(name) is not None or name == ROOT_PACKAGE
            if lazy or top in sys.stdlib_module_names:
                continue
            if top in TORCH_ONLY_PACKAGES or (
                    ours and any(_in(name, p) for p in TORCH_ONLY)):
                continue
            bad.append(f'{module}:{line} -> {name}')
    return bad


@pytest.fixture(scope='module')
def graph():
    return build_graph(REPO_DIR)


@pytest.fixture(scope='module')
def packages():
    return find_packages(REPO_DIR)


def test_the_checker_sees_the_whole_code_base(graph):
    assert {'hubconf', 'xdc_plugin', 'xdc_plugin.registry',
            'xdc_plugin.clustering.kmeans.ops', 'tools.run_net',
            'xdc_plugin.engine.launch.launch'} <= set(graph)
    assert all(layer_of(m) is not None for m in graph), [
        m for m in graph if layer_of(m) is None]
    # Sanity: known edges, one eager and one lazy, are seen.
    assert ('xdc_plugin.clustering.kmeans.ops', False) in {
        (name, lazy) for name, _, lazy in
        graph['xdc_plugin.clustering.kmeans.torch_kmeans']}
    assert ('xdc_plugin.atomic_write', True) in {
        (name, lazy) for name, _, lazy in graph['xdc_plugin.compat']}


def test_no_module_imports_a_higher_layer(graph):
    assert upward_imports(graph) == []


def test_no_import_cycles(graph):
    assert import_cycles(graph) == []


def test_no_two_folders_import_each_other(graph, packages):
    assert {'xdc_plugin.engine.hooks', 'xdc_plugin.engine.round',
            'xdc_plugin.engine.runner', 'xdc_plugin.engine.launch',
            'xdc_plugin.evaluation',
            'xdc_plugin.clustering.kmeans'} <= packages
    # Sanity: known one-way folder imports are seen.
    found = folder_imports(graph, packages)
    assert {('xdc_plugin.engine.hooks', 'xdc_plugin.engine.round'),
            ('xdc_plugin.evaluation', 'xdc_plugin.engine'),
            ('tools', 'xdc_plugin')} <= set(found)
    assert mutual_folder_imports(graph, packages) == []


def test_torch_only_modules_import_only_torch(graph):
    assert torch_only_violations(graph) == []


def _sources():
    for top in ('xdc_plugin', 'tools'):
        yield from glob.glob(osp.join(REPO_DIR, top, '**', '*.py'),
                             recursive=True)
    yield osp.join(REPO_DIR, 'hubconf.py')


def test_tools_import_the_installed_package_without_sys_path_changes():
    touching = []
    for path in glob.glob(osp.join(REPO_DIR, 'tools', '*.py')):
        tree = ast.parse(open(path, encoding='utf-8').read(), path)
        touching += [f'{osp.basename(path)}:{node.lineno}'
                     for node in ast.walk(tree)
                     if isinstance(node, ast.Attribute) and node.attr == 'path'
                     and isinstance(node.value, ast.Name)
                     and node.value.id == 'sys']
    assert touching == []


def test_sources_cite_nothing_outside_the_repository():
    outside = re.compile(r'\.\./shared|/work/|shared/notes|xdc-facts')
    citing = [f'{osp.relpath(path, REPO_DIR)}:{number}'
              for path in _sources()
              for number, line in enumerate(open(path, encoding='utf-8'), 1)
              if outside.search(line)]
    assert citing == []


# -- what the package declares ---------------------------------------------
def setup_arguments(monkeypatch):
    """The keyword arguments ``setup.py`` passes to ``setuptools.setup``."""
    captured = {}
    monkeypatch.setattr(setuptools, 'setup', captured.update)
    monkeypatch.chdir(REPO_DIR)
    runpy.run_path('setup.py', run_name='__main__')
    return captured


def _distribution(requirement):
    return re.sub(r'[-_.]+', '-', Requirement(requirement).name).lower()


def runtime_distributions(graph):
    """``{distribution: [importing module]}`` of the third-party packages
    that ``xdc_plugin`` imports (at any level)."""
    by_import = importlib.metadata.packages_distributions()
    found = {}
    for module, imports in graph.items():
        if not _in(module, ROOT_PACKAGE):
            continue
        for name, _, _ in imports:
            top = name.split('.')[0]
            if top in sys.stdlib_module_names or layer_of(top) is not None:
                continue
            for dist in by_import.get(top, [top]):
                found.setdefault(_distribution(dist), []).append(module)
    return found


# The extras that each bring one build of faiss (the same ``faiss`` module).
FAISS_EXTRAS = {'cpu': 'faiss-cpu', 'gpu': 'faiss-gpu'}


def test_install_requires_lists_what_the_runtime_imports(graph, monkeypatch):
    """faiss comes from the ``cpu`` or the ``gpu`` extra; everything else
    the runtime imports is in install_requires."""
    arguments = setup_arguments(monkeypatch)
    declared = {_distribution(r) for r in arguments['install_requires']}
    imported = runtime_distributions(graph)
    assert {'torch', 'mmengine', 'av', 'faiss-cpu', 'pillow'} <= set(imported)
    missing = {d: m for d, m in imported.items()
               if d not in declared | set(FAISS_EXTRAS.values())}
    assert not missing, missing
    assert not declared & set(FAISS_EXTRAS.values())


def test_each_faiss_extra_brings_one_build_and_no_other_extra_any(
        monkeypatch):
    extras = setup_arguments(monkeypatch)['extras_require']
    for extra, reqs in extras.items():
        builds = {_distribution(r) for r in reqs} & set(FAISS_EXTRAS.values())
        assert builds == ({FAISS_EXTRAS[extra]} if extra in FAISS_EXTRAS
                          else set()), extra


def test_the_readme_install_command_pulls_every_extra(monkeypatch):
    """...but the other faiss build."""
    extras = setup_arguments(monkeypatch)['extras_require']
    readme = open(osp.join(REPO_DIR, 'README.md'), encoding='utf-8').read()
    chosen = re.search(r'pip install -e "\.\[([\w,]+)\]"',
                       readme).group(1).split(',')
    assert 'cpu' in chosen and 'gpu' not in chosen
    everything = {_distribution(r) for extra, reqs in extras.items()
                  if extra != 'gpu' for r in reqs}
    assert everything <= {_distribution(r) for extra in chosen
                          for r in extras[extra]}


# -- the checker itself, on a synthetic code base ----------------------------
def write_tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_reports_upward_imports_cycles_and_heavy_imports(tmp_path):
    write_tree(tmp_path, {
        'xdc_plugin/__init__.py': '',
        'xdc_plugin/registry.py': 'import mmengine\n',
        'xdc_plugin/weights/__init__.py':
            'import torch\nimport mmengine\n'
            'def lazy():\n    import av\n',
        'xdc_plugin/data/__init__.py': '',
        'xdc_plugin/data/a.py': 'from xdc_plugin.data import b\n',
        'xdc_plugin/data/b.py': 'from . import a\n'
                                'from xdc_plugin.engine.hook import X\n',
        'xdc_plugin/data/c.py': 'def lazy():\n'
                                '    from xdc_plugin.data import a\n',
        'xdc_plugin/data/d.py': 'from xdc_plugin.data import c\n',
        'xdc_plugin/engine/__init__.py': '',
        'xdc_plugin/engine/hook.py':
            'def f():\n    import tools.run\n'
            'from xdc_plugin.registry import HOOKS\n',
        'tools/run.py': 'import xdc_plugin.engine.hook\n',
    })
    graph = build_graph(str(tmp_path))
    assert upward_imports(graph) == [
        'xdc_plugin.data.b:2 (components) -> xdc_plugin.engine.hook '
        '(runtime)',
        'xdc_plugin.engine.hook:2 (runtime) -> tools.run (tools)']
    allowed = {('xdc_plugin.engine.hook', 'tools.run'): 'a reason'}
    assert len(upward_imports(graph, allowed)) == 1
    # a <-> b is a cycle; c's lazy import of a closes none with d.
    assert import_cycles(graph) == [['xdc_plugin.data.a',
                                     'xdc_plugin.data.b']]
    assert torch_only_violations(graph) == ['xdc_plugin.weights:2 -> mmengine']


def test_checker_passes_a_layered_code_base(tmp_path):
    write_tree(tmp_path, {
        'xdc_plugin/__init__.py': 'from xdc_plugin import registry\n',
        'xdc_plugin/registry.py': 'import mmengine\n',
        'xdc_plugin/weights/__init__.py':
            'import os\nimport torch\nfrom xdc_plugin.weights import x\n',
        'xdc_plugin/weights/x.py': 'import torchvision.models\n',
        'xdc_plugin/models/__init__.py':
            'from xdc_plugin.weights import x\nimport mmengine\n',
        'tools/run.py': 'import xdc_plugin.models\n',
    })
    graph = build_graph(str(tmp_path))
    assert graph['xdc_plugin.weights'][2][0] == 'xdc_plugin.weights.x'
    assert upward_imports(graph) == []
    assert import_cycles(graph) == []
    assert mutual_folder_imports(graph, find_packages(str(tmp_path))) == []
    assert torch_only_violations(graph) == []


def test_checker_reports_folders_that_import_each_other(tmp_path):
    write_tree(tmp_path, {
        'xdc_plugin/__init__.py': '',
        'xdc_plugin/registry.py': '',
        'xdc_plugin/engine/__init__.py':
            'from xdc_plugin.engine.hooks import hook\n',
        'xdc_plugin/engine/hooks/__init__.py': '',
        'xdc_plugin/engine/hooks/hook.py':
            'from xdc_plugin.engine.round import step\n'
            'from xdc_plugin.registry import HOOKS\n',
        'xdc_plugin/engine/round/__init__.py': '',
        'xdc_plugin/engine/round/step.py':
            'def f():\n    from xdc_plugin.engine.hooks import hook\n',
        'xdc_plugin/engine/round/probe.py':
            'from xdc_plugin.evaluation import table\n',
        'xdc_plugin/evaluation/__init__.py': '',
        'xdc_plugin/evaluation/table.py': '',
        'xdc_plugin/evaluation/load.py':
            'from xdc_plugin.engine.runner.config import load\n',
        'xdc_plugin/engine/runner/__init__.py': '',
        'xdc_plugin/engine/runner/config.py': '',
        # clustering/ holds clustering/kmeans/: their imports make no pair.
        'xdc_plugin/clustering/__init__.py':
            'from xdc_plugin.clustering.kmeans import base\n',
        'xdc_plugin/clustering/prep.py': '',
        'xdc_plugin/clustering/kmeans/__init__.py': '',
        'xdc_plugin/clustering/kmeans/base.py':
            'from xdc_plugin.clustering import prep\n',
        'tools/run.py': 'import xdc_plugin.engine\n',
    })
    graph = build_graph(str(tmp_path))
    packages = find_packages(str(tmp_path))
    assert folder_of('xdc_plugin.engine', packages) == 'xdc_plugin.engine'
    assert folder_of('tools.run', packages) == 'tools'
    assert mutual_folder_imports(graph, packages) == [
        'xdc_plugin.engine <-> xdc_plugin.evaluation: '
        'xdc_plugin.engine.round.probe:1 -> xdc_plugin.evaluation.table; '
        'xdc_plugin.evaluation.load:1 -> xdc_plugin.engine.runner.config',
        'xdc_plugin.engine.hooks <-> xdc_plugin.engine.round: '
        'xdc_plugin.engine.hooks.hook:1 -> xdc_plugin.engine.round.step; '
        'xdc_plugin.engine.round.step:2 -> xdc_plugin.engine.hooks.hook']
    assert ('tools', 'xdc_plugin') in folder_imports(graph, packages)
