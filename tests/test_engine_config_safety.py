"""A YAML config never runs code: a Python tag in a recipe, in one of its
``_base_`` files or in an override is refused with one line that names the
file, through every entry point that reads a config (training, dry run,
evaluation). Each payload would create a file if it ran."""
import os.path as osp
import runpy
import subprocess
import sys

import pytest

from xdc_plugin.engine.runner.config import (ConfigFileError,
                                             ConfigOverrideError, load_config)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(REPO, 'configs', 'xdc_demo.yaml')


def _payload(marker):
    return f'!!python/object/apply:os.system ["touch {marker}"]'


@pytest.fixture
def evil(tmp_path):
    """``(recipe with a payload, recipe whose _base_ has it, marker)``."""
    marker = tmp_path / 'pwned'
    recipe = tmp_path / 'evil.yaml'
    recipe.write_text(f"_base_: ['{DEMO}']\nwork_dir: {_payload(marker)}\n")
    child = tmp_path / 'child.yaml'
    child.write_text(f"_base_: ['{recipe}']\n")
    return recipe, child, marker


def test_a_python_tag_in_a_recipe_or_its_base_is_refused(evil):
    recipe, child, marker = evil
    for path in (recipe, child):
        with pytest.raises(ConfigFileError) as err:
            load_config(str(path))
        message = str(err.value)
        assert str(path) in message and 'python/object/apply' in message
        assert '\n' not in message
    assert not marker.exists()


def test_a_python_tag_in_an_override_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    for override in (f'work_dir={_payload(marker)}',
                     f'+extra={_payload(marker)}'):
        with pytest.raises(ConfigOverrideError, match='not plain YAML'):
            load_config(DEMO, [override])
    assert not marker.exists()


def test_plain_yaml_still_loads_after_a_refusal(evil):
    with pytest.raises(ConfigFileError):
        load_config(str(evil[0]))
    # mmengine's own YAML handler is back outside our loader.
    from mmengine.fileio.handlers import YamlHandler, file_handlers
    assert type(file_handlers['yaml']) is YamlHandler
    assert load_config(DEMO).model.type == 'XDCModel'


@pytest.mark.parametrize('extra', [[], ['--dry-run']], ids=['train', 'dry'])
def test_run_net_prints_one_line_and_runs_nothing(evil, extra):
    recipe, child, marker = evil
    for path in (recipe, child):
        done = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'run_net.py'), '--cfg',
             str(path)] + extra, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0
        assert 'Traceback' not in done.stderr
        assert done.stderr.strip().startswith('error: ')
        assert str(path) in done.stderr
    assert not marker.exists()


def test_evaluate_refuses_the_config(evil, tmp_path, capsys):
    evaluate = runpy.run_path(osp.join(REPO, 'tools', 'evaluate.py'))
    manifest = tmp_path / 'm.csv'
    manifest.write_text('path,label\n')
    with pytest.raises(SystemExit):
        evaluate['main'](['random', '--cfg', str(evil[1]), '--data',
                          str(manifest), '--label-column', 'label'])
    err = capsys.readouterr().err
    assert 'error: ' in err and 'python/object/apply' in err
    assert not evil[2].exists()


def test_a_tuple_tag_is_data_and_is_read(tmp_path):
    # mmaction2's Resize takes a tuple scale only; the benchmark configs
    # write it as !!python/tuple, which builds nothing but a tuple.
    recipe = tmp_path / 'tuple.yaml'
    recipe.write_text(f"_base_: ['{DEMO}']\n"
                      'extra: !!python/tuple [-1, 128]\n')
    assert load_config(str(recipe)).extra == (-1, 128)
