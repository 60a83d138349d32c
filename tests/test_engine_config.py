"""Config loading: YAML with _base_, checked KEY=VALUE overrides, the
shipped configs found in any kind of install."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from xdc_plugin.engine.runner.config import (ConfigFileError, ConfigKeyError,
                                             ConfigTypeError, ConfigValueError,
                                             check_dataloaders, load_config,
                                             parse_overrides, shipped_config)

CONFIGS = osp.join(osp.dirname(osp.dirname(__file__)), 'configs')


def test_parse_overrides_types_values_as_yaml():
    existing, new = parse_overrides(
        ['a.b=3', 'a.c=0.5', 'd=[1, 2]', 'e=null', 'f=true', '+g=xdc'])
    assert existing == {'a.b': 3, 'a.c': 0.5, 'd': [1, 2], 'e': None,
                        'f': True}
    assert new == {'g': 'xdc'}
    with pytest.raises(ValueError, match='KEY=VALUE'):
        parse_overrides(['novalue'])


def test_demo_config_inherits_the_runtime_base():
    cfg = load_config(osp.join(CONFIGS, 'xdc_demo.yaml'))
    assert cfg.default_scope == 'xdc'
    assert cfg.custom_imports['imports'] == ['xdc_plugin']
    assert cfg.model.type == 'XDCModel'
    # The dataset layer (configs/_base_/datasets) gives the pipeline.
    assert cfg.train_dataloader.dataset.pipeline[0]['num_frames'] == 8
    assert cfg.train_dataloader.dataset.type == 'DemoAVDataset'
    assert cfg.default_hooks.step_seed.type == 'StepSeedHook'


def test_override_changes_nested_and_list_values():
    cfg = load_config(osp.join(CONFIGS, 'xdc_demo.yaml'),
                      ['train_cfg.max_epochs=2', 'model.variant=cdc',
                       'default_hooks.clustering.interval=1',
                       'param_scheduler.0.T_max=2',
                       "+model.head={type: LinearHead, dropout: 0.1}"])
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.model.variant == 'cdc'
    assert cfg.default_hooks.clustering['interval'] == 1
    assert cfg.param_scheduler[0]['T_max'] == 2
    assert cfg.model.head == dict(type='LinearHead', dropout=0.1)


def test_wrong_key_is_a_clear_error_with_a_suggestion():
    with pytest.raises(ConfigKeyError) as err:
        load_config(osp.join(CONFIGS, 'xdc_demo.yaml'),
                    ['train_cfg.max_epoch=2'])
    message = str(err.value)
    assert "'max_epoch' is not in train_cfg" in message
    assert 'max_epochs' in message


@pytest.mark.parametrize('override, expected_type', [
    ('model.num_clusters=abc', "str 'abc'"),
    ('model.num_clusters=8.0', 'float 8.0'),
    ('model.num_clusters=[8]', 'list [8]'),
    ('train_dataloader.persistent_workers=1', 'int 1'),
    ('train_dataloader.batch_size=true', 'bool True'),
    ('optim_wrapper.optimizer.lr=fast', "str 'fast'"),
])
def test_wrong_type_names_the_key_the_value_and_the_type(override,
                                                         expected_type):
    key, _ = override.split('=', 1)
    with pytest.raises(ConfigTypeError) as err:
        load_config(osp.join(CONFIGS, 'xdc_demo.yaml'), [override])
    message = str(err.value)
    assert f'config key {key!r} expects' in message
    assert f'got {expected_type}' in message


def test_type_check_admits_the_sensible_exceptions():
    cfg = load_config(osp.join(CONFIGS, 'xdc_demo.yaml'), [
        'optim_wrapper.optimizer.lr=1',  # int where a float is expected
        'optim_wrapper.optimizer.weight_decay=1e-4',  # YAML reads a string
        'work_dir=007',  # a name that YAML reads as a number, kept as typed
        'model.num_clusters=null',
        '+model.num_clusters={video: 8, audio: 4}',  # another type, with +
    ])
    lr = cfg.optim_wrapper.optimizer.lr
    assert lr == 1.0 and isinstance(lr, float)
    assert cfg.optim_wrapper.optimizer.weight_decay == pytest.approx(1e-4)
    assert cfg.work_dir == '007'
    assert cfg.model.num_clusters == {'video': 8, 'audio': 4}


@pytest.mark.parametrize('path', sorted(
    p for p in glob.glob(osp.join(CONFIGS, '*.yaml'))))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert 'model' in cfg


def test_a_missing_config_file_is_named(tmp_path):
    for path, says in ((tmp_path / 'nope.yaml', 'no such file'),
                       (tmp_path, 'not a regular file')):
        with pytest.raises(ConfigFileError) as info:
            load_config(str(path))
        assert str(info.value) == f'config file {path}: {says}'


def test_every_dataloader_is_checked_for_values_torch_refuses():
    demo = osp.join(CONFIGS, 'xdc_demo.yaml')
    check_dataloaders(load_config(demo))  # the shipped values pass
    for override, says in (
            ('train_dataloader.num_workers=-1',
             'train_dataloader.num_workers must be an integer >= 0, got -1'),
            ('default_hooks.clustering.extract_dataloader.batch_size=0',
             'default_hooks.clustering.extract_dataloader.batch_size must '
             'be an integer >= 1, got 0'),
            ('+train_dataloader.num_workers=two',
             "train_dataloader.num_workers must be an integer >= 0, got "
             "'two'")):
        with pytest.raises(ConfigValueError) as info:
            check_dataloaders(load_config(demo, [override]))
        assert str(info.value) == says


def test_shipped_configs_are_found_beside_the_package_in_a_checkout():
    assert shipped_config('xdc_demo.yaml') == osp.join(CONFIGS,
                                                       'xdc_demo.yaml')
    with pytest.raises(FileNotFoundError, match='nope.yaml'):
        shipped_config('nope.yaml')


def test_the_default_config_is_package_data_of_a_wheel(tmp_path):
    source = tmp_path / 'source'
    source.mkdir()
    repo = osp.dirname(CONFIGS)
    for name in ('setup.py', 'xdc_plugin', 'configs'):
        copy = shutil.copytree if osp.isdir(osp.join(repo, name)) else \
            shutil.copy
        kwargs = ({'ignore': shutil.ignore_patterns('__pycache__')}
                  if copy is shutil.copytree else {})
        copy(osp.join(repo, name), source / name, **kwargs)
    pip = [sys.executable, '-m', 'pip', '-q']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation',
                          '--no-index', '-w', str(tmp_path / 'dist'),
                          str(source)], check=True, timeout=300)
    wheel = next((tmp_path / 'dist').glob('xdc_plugin-*.whl'))
    subprocess.run(pip + ['install', '--no-deps', '--no-index', '--target',
                          str(tmp_path / 'site'), str(wheel)], check=True,
                   timeout=300)
    code = ('from xdc_plugin.engine.launch.launch import DEFAULT_CONFIG\n'
            'from xdc_plugin.engine.runner.config import load_config\n'
            'print(DEFAULT_CONFIG, load_config(DEFAULT_CONFIG).model.type)')
    out = subprocess.run(
        [sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
        text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(tmp_path / 'site')))
    assert out.returncode == 0, out.stderr[-2000:]
    installed = tmp_path / 'site' / 'xdc_plugin' / 'configs' / 'xdc_demo.yaml'
    assert out.stdout.split()[-2:] == [str(installed), 'XDCModel']
