"""A small synthetic audio-visual dataset with hidden classes, no download.

Class ``k`` ties what is SEEN to what is HEARD:

    video: the shape of a moving object, its motion pattern and pace, and
           the hue of the object;
    audio: the pitch and pitch contour of a tone and its timbre.

Everything else is class-independent nuisance, drawn per clip: background
colour and faint stripes (random orientation, frequency, contrast), the
object's saturation, brightness and size, its position and phase, brightness
flicker and pixel noise; loudness, background-noise level, a +-6 % pitch
jitter and the repetition rate of the contour. Randomly initialised encoders
separate the classes only weakly (video NMI about 0.1, audio about 0.3-0.5
with k = 6), mostly through the object's hue and the pitch; shape, motion and
contour must be learnt, which XDC does from the other modality's clusters.
Object size and loudness also pulse together at a random rate (an A/V
synchrony cue that says nothing about the class).

Files: H.264 (libx264, yuv420p) + AAC (16 kHz mono) mp4 written by PyAV,
``manifest.csv`` with ``path,label`` (the hidden class name), and a
``.complete`` marker written last that makes generation idempotent.
``DemoAVDataset`` is the dataset that writes them on first use.
"""
import csv
import json
import os
import os.path as osp

import av
import numpy as np
from mmengine import dist
from tqdm import tqdm

from xdc_plugin.data.dataset import AVClipDataset
from xdc_plugin.registry import DATASETS

__all__ = ['make_demo_dataset', 'write_mp4', 'DEMO_CLASSES',
           'DemoAVDataset']

SHAPES = ('circle', 'square', 'triangle', 'cross')
MOTIONS = ('horizontal', 'vertical', 'orbit', 'diagonal')
CONTOURS = ('rising', 'falling', 'pulsed', 'warble')
# (shape, motion, contour, timbre): up to 8 classes, no two alike in
# either modality.
DEMO_CLASSES = tuple(
    (SHAPES[k % 4], MOTIONS[(k + 2 * (k // 4)) % 4], CONTOURS[k % 4],
     'pure' if k < 4 else 'rich') for k in range(8))
_BASE_HZ = (440.0, 660.0, 330.0, 550.0)
_SPEED_HZ = (0.4, 1.6, 0.8, 1.2)  # motion cycles per second, per class
_HUES = np.array([(230, 60, 50), (60, 200, 70), (60, 90, 230),
                  (230, 210, 50)], np.float64)  # object hue per class
_SAMPLE_RATE = 16000


def _class_name(k):
    shape, motion, contour, timbre = DEMO_CLASSES[k]
    return f'{shape}-{motion}-{contour}-{timbre}'


def _shape_mask(shape, dx, dy, r):
    if shape == 'circle':
        return dx * dx + dy * dy < r * r
    if shape == 'square':
        return np.maximum(np.abs(dx), np.abs(dy)) < 0.85 * r
    if shape == 'triangle':  # apex up
        return (dy < 0.8 * r) & (np.abs(dx) < 0.6 * (dy + r)) & (dy > -r)
    return ((np.abs(dx) < r / 3) & (np.abs(dy) < r)) | \
        ((np.abs(dy) < r / 3) & (np.abs(dx) < r))


def _render_video(rng, k, n_frames, fps, size, pulse):
    shape, motion = DEMO_CLASSES[k][:2]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: random colour plus faint stripes of random orientation.
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4)
    stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy)
                     + rng.uniform(0, 2 * np.pi))
    base = rng.uniform(30, 225, 3)
    bg = base[None, None] + rng.uniform(0, 30) * stripes[..., None]
    # The object's hue is the class's, with random saturation and
    # brightness; the background's colour is random. Averaged over the
    # frame, colour is thus a weak class cue that random features can pick
    # up a little; shape and motion are the strong cues that must be learnt.
    colour = np.clip(_HUES[k % 4] * rng.uniform(0.6, 1.0) +
                     rng.uniform(-30, 30, 3), 0, 255)
    radius = size * rng.uniform(0.2, 0.28)
    amp = size * rng.uniform(0.12, 0.2)
    cx0, cy0 = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    # Each class moves at its own pace (a cue that even random 3D
    # convolutions pick up a little), +-15 % per clip.
    omega = 2 * np.pi * _SPEED_HZ[k % 4] * np.exp(rng.uniform(-0.15, 0.15))
    phase = rng.uniform(0, 2 * np.pi)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        t = i / fps
        s = np.sin(omega * t + phase)
        c = np.cos(omega * t + phase)
        dx, dy = {'horizontal': (amp * s, 0.0), 'vertical': (0.0, amp * s),
                  'orbit': (amp * c, amp * s),
                  'diagonal': (0.7 * amp * s, -0.7 * amp * s)}[motion]
        r = radius * (1 + 0.2 * pulse(t))
        mask = _shape_mask(shape, xx - (cx0 + dx), yy - (cy0 + dy), r)
        img = np.where(mask[..., None], colour, bg)
        img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 6, img.shape)
        frames[i] = np.clip(img, 0, 255)
    return frames


def _render_audio(rng, k, duration, pulse):
    contour, timbre = DEMO_CLASSES[k][2:]
    sr = _SAMPLE_RATE
    t = np.arange(int(round(duration * sr))) / sr
    f0 = _BASE_HZ[k % 4] * np.exp(rng.uniform(-0.06, 0.06))  # pitch jitter
    period = rng.uniform(0.6, 1.2)
    u = ((t + rng.uniform(0, period)) / period) % 1.0  # 0..1 sawtooth
    env = np.ones_like(t)
    if contour == 'rising':
        f = f0 * 2 ** u
    elif contour == 'falling':
        f = f0 * 2 ** (1 - u)
    elif contour == 'pulsed':
        f = np.full_like(t, f0)
        env = (((t * rng.uniform(4, 6)) % 1.0) < 0.5).astype(np.float64)
    else:  # warble between two notes a fifth apart
        f = f0 * np.where(((t * rng.uniform(2.5, 4)) % 1.0) < 0.5, 1.0, 1.5)
    ph = 2 * np.pi * np.cumsum(f) / sr
    wave = np.sin(ph)
    if timbre == 'rich':
        wave = wave + 0.6 * np.sin(2 * ph) + 0.4 * np.sin(3 * ph)
        wave /= 2.0
    wave *= env * (1 + 0.3 * pulse(t))
    loud = rng.uniform(0.1, 0.6)
    noise = rng.normal(0, 1, t.shape) * loud * rng.uniform(0.05, 0.5)
    return np.clip(loud * wave + noise, -1, 1).astype(np.float32)


def write_mp4(path, frames, audio=None, fps=15, sample_rate=_SAMPLE_RATE,
              faststart=False):
    """Write uint8 RGB ``frames`` (T, H, W, 3) as H.264 yuv420p and, unless
    None, the float32 mono ``audio`` as AAC, into an mp4 at ``path``
    (written to ``path + '.part'`` then renamed). ``faststart`` puts the
    index (moov) before the media data."""
    tmp = path + '.part'
    options = {'movflags': '+faststart'} if faststart else {}
    with av.open(tmp, 'w', format='mp4', options=options) as out:
        vs = out.add_stream('libx264', rate=fps)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = 'yuv420p'
        vs.options = {'preset': 'ultrafast', 'crf': '20', 'threads': '1'}
        if audio is not None:
            aus = out.add_stream('aac', rate=sample_rate)
            aus.layout = 'mono'
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img),
                                               format='rgb24')
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if audio is not None:
            audio = np.asarray(audio, np.float32)
            for s in range(0, len(audio), 1024):
                frame = av.AudioFrame.from_ndarray(
                    audio[None, s:s + 1024], format='flt', layout='mono')
                frame.sample_rate, frame.pts = sample_rate, s
                out.mux(aus.encode(frame))
            out.mux(aus.encode())
    os.replace(tmp, path)


def make_demo_dataset(root, num_classes=4, clips_per_class=40, duration=3.0,
                      size=64, fps=15, seed=0, progress=True):
    """Write the demo set under ``root``; return the manifest path.

    Deterministic for a given set of arguments. If ``root/.complete``
    records the same arguments, nothing is regenerated.
    """
    if not 1 <= num_classes <= len(DEMO_CLASSES):
        raise ValueError(f'num_classes must be in 1..{len(DEMO_CLASSES)}')
    params = dict(num_classes=num_classes, clips_per_class=clips_per_class,
                  duration=duration, size=size, fps=fps, seed=seed,
                  version=3)
    manifest = osp.join(root, 'manifest.csv')
    marker = osp.join(root, '.complete')
    if osp.isfile(marker) and osp.isfile(manifest):
        with open(marker) as f:
            if json.load(f) == params:
                return manifest
    os.makedirs(root, exist_ok=True)
    if osp.exists(marker):
        os.remove(marker)
    rows = []
    n_frames = int(round(duration * fps))
    jobs = [(k, i) for k in range(num_classes) for i in range(clips_per_class)]
    for k, i in tqdm(jobs, desc='demo clips', disable=not progress):
        rng = np.random.default_rng([seed, k, i])
        rate, ph = rng.uniform(1.0, 3.0), rng.uniform(0, 2 * np.pi)

        def pulse(t):
            return np.sin(2 * np.pi * rate * t + ph)
        name = _class_name(k)
        rel = f'{name}/{name}_{i:03d}.mp4'
        os.makedirs(osp.join(root, name), exist_ok=True)
        write_mp4(osp.join(root, rel),
                  _render_video(rng, k, n_frames, fps, size, pulse),
                  _render_audio(rng, k, duration, pulse), fps)
        rows.append((rel, name))
    with open(manifest + '.part', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label'])
        writer.writerows(rows)
    os.replace(manifest + '.part', manifest)
    with open(marker, 'w') as f:
        json.dump(params, f)
    return manifest


@DATASETS.register_module()
class DemoAVDataset(AVClipDataset):
    """The demo set under ``data_root`` (``manifest.csv``, label column
    ``label``), made there on first use: ``generate`` holds the arguments
    of ``make_demo_dataset`` (num_classes, clips_per_class, seed, ...). In
    distributed runs rank 0 writes it while the other ranks wait. Other
    arguments are ``AVClipDataset``'s."""

    def __init__(self, data_root='data/xdc_demo', generate=None, **kwargs):
        self.generate = dict(generate or {})
        super().__init__(ann_file='manifest.csv', data_root=data_root,
                         **kwargs)

    def load_data_list(self):
        if dist.is_main_process():
            make_demo_dataset(self.data_root, **self.generate)
        dist.barrier()
        return super().load_data_list()
