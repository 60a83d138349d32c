"""What ``import xdc_plugin`` does: with mmengine, only the registry (the
``xdc`` scope) is imported, modules load on first lookup, and no host state
such as the ``xdc://`` checkpoint scheme changes until asked for."""
import subprocess
import sys
import textwrap

IMPORT_THEN_BUILD = textwrap.dedent('''
    import sys
    from mmengine.runner import CheckpointLoader
    import xdc_plugin
    loaded = sorted(m for m in sys.modules if m.startswith('xdc_plugin'))
    assert 'xdc_plugin.registry' in loaded, loaded
    assert not [m for m in loaded if m.split('.')[1:2] in (
        ['models'], ['data'], ['engine'], ['clustering'])], loaded
    from mmengine.registry import MODELS
    model = MODELS.build(dict(
        type='xdc.XDCModel', variant='xdc', num_clusters=4,
        video_encoder=dict(type='R2Plus1D18', width=0.125),
        audio_encoder=dict(type='AudioResNet18', width=0.125)))
    print(type(model).__module__, type(model).__name__)
    assert 'xdc_plugin.models' in sys.modules
    assert 'xdc://' not in CheckpointLoader._schemes
    from xdc_plugin.models import register_xdc_scheme
    register_xdc_scheme()
    assert 'xdc://' in CheckpointLoader._schemes
''')


def test_import_registers_the_scope_and_builds_lazily():
    out = subprocess.run([sys.executable, '-c', IMPORT_THEN_BUILD],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    last_line = out.stdout.strip().splitlines()[-1]
    assert last_line == 'xdc_plugin.models.xdc_model XDCModel'
