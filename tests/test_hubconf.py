"""``hubconf.py`` serves ``xdc_video_encoder`` with torch and torchvision
only: mmengine, mmaction2 and the data libraries made unimportable."""
import os.path as osp
import subprocess
import sys
import textwrap

import torch
from conftest import assert_same_encoder

from xdc_plugin.encoders import R2Plus1D18
from xdc_plugin.weights import DEFAULT_PRETRAINING

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
UNIMPORTABLE = ('mmengine', 'mmaction', 'mmcv', 'av', 'faiss', 'sklearn',
                'torchaudio', 'pytorchvideo', 'submitit')

WITHOUT_TRAINING_STACK = textwrap.dedent('''
    import sys
    for name in {unimportable!r}:
        sys.modules[name] = None  # "import name" now raises ImportError
    repo, weights_path = sys.argv[1:]
    sys.path.insert(0, repo)
    import hubconf
    import torch
    assert hubconf.dependencies == ['torch', 'torchvision']
    fresh = hubconf.xdc_video_encoder(pretraining=None, num_classes=5)
    assert fresh.fc.out_features == 5
    local = hubconf.xdc_video_encoder(weights=weights_path, num_classes=0,
                                      width=0.125)
    expected = torch.load(weights_path, weights_only=True)
    assert all(torch.equal(local.state_dict()[k], v)
               for k, v in expected.items())
    hub = torch.hub.load(repo, 'xdc_video_encoder', source='local',
                         weights=weights_path, num_classes=3, width=0.125)
    assert torch.equal(hub.stem[0].weight, local.stem[0].weight)
    loaded = sorted(m for m in sys.modules if m.startswith('xdc_plugin'))
    print(' '.join(loaded))
''').format(unimportable=UNIMPORTABLE)


def test_hubconf_without_mmengine_and_data_libraries(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / 'tiny.pth'
    torch.save(R2Plus1D18(num_classes=0, width=0.125).state_dict(), weights)
    out = subprocess.run(
        [sys.executable, '-c', WITHOUT_TRAINING_STACK, REPO_DIR,
         str(weights)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(out.stdout.split())
    assert 'xdc_plugin.weights' in loaded
    assert not {'xdc_plugin.registry', 'xdc_plugin.models',
                'xdc_plugin.compat'} & loaded


def test_torch_hub_load_local_repo(official):
    state_dict, path, _ = official
    model = torch.hub.load(REPO_DIR, 'xdc_video_encoder', source='local',
                           pretraining=DEFAULT_PRETRAINING, weights=path,
                           num_classes=7)
    assert isinstance(model, R2Plus1D18) and model.fc.out_features == 7
    assert_same_encoder(model, state_dict)
