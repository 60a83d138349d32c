"""configs/finetune_ucf101_xdc.yaml: mmaction2 Recognizer3D + XDCBackbone
builds and trains one step on a tiny generated video set."""
import math
import os.path as osp

import av
import numpy as np
import pytest
import torch

import xdc_plugin  # noqa: F401
from xdc_plugin.encoders import XDC_MEAN, XDC_STD, R2Plus1D18

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO_DIR, 'configs', 'finetune_ucf101_xdc.yaml')


def _write_video(path, n_frames=20, size=(96, 72), seed=0):
    rng = np.random.default_rng(seed)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('mpeg4', rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = 'yuv420p'
        for _ in range(n_frames):
            image = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format='rgb24')
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def tiny_ucf(tmp_path):
    videos = tmp_path / 'videos'
    (videos / 'ClassA').mkdir(parents=True)
    (videos / 'ClassB').mkdir()
    lines = []
    for i, (folder, label) in enumerate([('ClassA', 0), ('ClassB', 1),
                                         ('ClassA', 0), ('ClassB', 1)]):
        rel = f'{folder}/v_{folder}_g01_c0{i}.mp4'
        _write_video(videos / rel, seed=i)
        lines.append(f'{rel} {label}')
    ann = tmp_path / 'train_split_1.txt'
    ann.write_text('\n'.join(lines) + '\n')
    return str(videos), str(ann)


def test_config_is_the_documented_template():
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    assert cfg.default_scope == 'mmaction'
    assert cfg.custom_imports['imports'] == ['xdc_plugin']
    backbone = cfg.model.backbone
    assert backbone.type == 'xdc.XDCBackbone'
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint='xdc://r2plus1d_18_xdc_ig65m_kinetics')
    head = cfg.model.cls_head
    assert (head.type, head.num_classes, head.in_channels) == ('I3DHead', 101,
                                                               512)
    pre = cfg.model.data_preprocessor
    assert np.allclose(pre.mean, np.array(XDC_MEAN) * 255, atol=1e-3)
    assert np.allclose(pre.std, np.array(XDC_STD) * 255, atol=1e-3)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        pipeline = cfg[loader].dataset.pipeline
        sample = next(t for t in pipeline if t['type'] == 'SampleFrames')
        crop = next(t for t in pipeline if 'Crop' in t['type'])
        assert sample['clip_len'] == 32
        assert crop.get('size', crop.get('crop_size')) == 112
    assert 'ucf101_train_split_1' in cfg.train_dataloader.dataset.ann_file
    assert cfg.optim_wrapper.optimizer.type == 'SGD'


def test_recognizer_trains_one_step(tiny_ucf, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    videos, ann = tiny_ucf
    # Pretrained weights for the reduced-width backbone, official layout.
    torch.manual_seed(0)
    weights = R2Plus1D18(num_classes=0, width=0.25).state_dict()
    weights_path = str(tmp_path / 'small_encoder.pth')
    torch.save(weights, weights_path)

    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.width = 0.25
    cfg.model.backbone.init_cfg.checkpoint = weights_path
    cfg.model.cls_head.in_channels = 128
    loader = cfg.train_dataloader
    loader.batch_size, loader.num_workers = 2, 0
    loader.persistent_workers = False
    loader.dataset.ann_file = ann
    loader.dataset.data_prefix = dict(video=videos)
    for transform in loader.dataset.pipeline:
        if transform['type'] == 'SampleFrames':
            transform['clip_len'] = 8
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.param_scheduler = []
    cfg.default_hooks.pop('checkpoint')
    cfg.log_processor.by_epoch = False
    cfg.work_dir = str(tmp_path / 'work')

    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model
    assert type(model).__name__ == 'Recognizer3D'
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss)
    # The stem is frozen (lr 0) in the recipe: it still holds the weights
    # init_cfg loaded; later layers moved.
    assert torch.equal(model.backbone.stem[0].weight, weights['stem.0.weight'])
    assert not torch.equal(model.backbone.layer4[1].conv2[0][3].weight,
                           weights['layer4.1.conv2.0.3.weight'])
