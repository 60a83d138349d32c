"""custom_imports makes every xdc component buildable from host configs;
building in the xdc scope warns of nothing."""
import subprocess
import sys
import textwrap

BUILD_FROM_CONFIG = textwrap.dedent('''
    import sys
    from mmengine.config import Config
    assert 'xdc_plugin' not in sys.modules
    cfg = Config.fromfile(sys.argv[1])  # performs custom_imports
    assert 'xdc_plugin' in sys.modules
    from mmengine.registry import DefaultScope
    if sys.argv[2] == 'mmaction':
        import mmaction.models  # noqa: F401
        from mmaction.registry import MODELS
    else:
        from mmengine.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        from mmengine.registry import HOOKS
        hook = HOOKS.build(cfg.custom_hooks[0])
    print(type(model).__name__, model.variant, type(hook).__name__)
''')

CONFIG = textwrap.dedent('''
    default_scope = '{scope}'
    custom_imports = dict(imports=['xdc_plugin'], allow_failed_imports=False)
    model = dict(
        type='xdc.XDCModel', variant='mdc', num_clusters=4,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125))
    custom_hooks = [dict(type='xdc.CrossModalClusteringHook',
                         clusterers=dict(type='TorchKMeans'),
                         extract_dataloader=dict(dataset=dict(pipeline=[])))]
''')


def _build(tmp_path, scope):
    path = tmp_path / f'{scope}_config.py'
    path.write_text(CONFIG.format(scope=scope))
    out = subprocess.run(
        [sys.executable, '-c', BUILD_FROM_CONFIG, str(path), scope],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_build_from_an_mmengine_config(tmp_path):
    assert _build(tmp_path, 'mmengine') == \
        'XDCModel mdc CrossModalClusteringHook'


def test_build_from_an_mmaction_config(tmp_path):
    assert _build(tmp_path, 'mmaction') == \
        'XDCModel mdc CrossModalClusteringHook'


BUILD_IN_OUR_SCOPE = textwrap.dedent('''
    import sys
    from mmengine.registry import init_default_scope
    import xdc_plugin.models  # noqa: F401
    from xdc_plugin.registry import MODELS
    init_default_scope('xdc')
    MODELS.build(dict(type='AVDataPreprocessor'))
    import xdc_plugin.registry
    assert sys.modules['xdc.registry'] is xdc_plugin.registry
    assert 'xdc' not in sys.modules  # only the one name mmengine imports
    print('built')
''')


def test_building_in_the_xdc_scope_logs_no_registry_import_warning():
    out = subprocess.run([sys.executable, '-c', BUILD_IN_OUR_SCOPE],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('built')
    assert 'Failed to import' not in out.stdout + out.stderr
