import glob
import os.path as osp

from setuptools import find_packages, setup

# bench/ and the tests import these themselves (fvcore: an independent
# FLOP count); pytorchvideo, a runtime dependency, brings them too.
BENCH_REQUIRES = ['fvcore', 'iopath']

# faiss, the CPU or the GPU build: both install the same ``faiss`` module
# (over each other), so it is an extra that names one of them, never both
# (``pip install -e ".[cpu]"`` or ``".[gpu]"``). faiss-gpu is Meta's CUDA 12
# build on PyPI (Linux x86_64; it brings its CUDA 12 runtime wheels, run by
# any driver that runs CUDA 12 or 13).
FAISS_BUILDS = {'cpu': ['faiss-cpu>=1.7.4'], 'gpu': ['faiss-gpu>=1.15']}

# configs/ ships as the package data ``xdc_plugin/configs`` (found by
# ``xdc_plugin.engine.runner.config.shipped_config`` in any kind of install).
CONFIG_FILES = sorted(
    osp.relpath(path, 'configs')
    for pattern in ('configs/**/*.yaml', 'configs/**/*.py')
    for path in glob.glob(pattern, recursive=True))

setup(
    name='xdc_plugin',
    version='0.1.0',
    description='Cross-modal audio-video clustering (XDC) pretraining for '
                'mmengine / mmaction2',
    packages=find_packages(include=['xdc_plugin', 'xdc_plugin.*']) + [
        'xdc_plugin.configs'],
    package_dir={'xdc_plugin.configs': 'configs'},
    package_data={'xdc_plugin.configs': CONFIG_FILES,
                  'xdc_plugin.visualization': ['templates/*.html']},
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.6,<2.15',
        'torchvision>=0.21,<0.30',
        'torchaudio>=2.6,<2.12',
        'numpy',
        'mmengine>=0.10.4,<0.11',
        'mmcv-lite==2.1.0',
        'mmaction2==1.2.0',
        # mmaction2 1.2.0 imports it without declaring it.
        'importlib-metadata',
        'av>=11',
        'submitit>=1.4',
        'scikit-learn>=1.2',
        # thread limits of the frozen-feature probes (probe/protocols)
        'threadpoolctl',
        'tqdm',
        'pyyaml',
        # the cluster gallery (xdc_plugin.visualization)
        'jinja2>=3',
        'matplotlib>=3.5',
        'pillow',
        # its hub models as encoders (models/pytorchvideo_hub.py); the
        # baseline of bench/bench_data_pipeline.py
        'pytorchvideo==0.1.5',
    ],
    extras_require={
        **FAISS_BUILDS,
        'bench': BENCH_REQUIRES,
        # live curves: mmengine's TensorboardVisBackend
        'tensorboard': ['tensorboard'],
        # the browser test drives Debian's chromium (installed by .ci/run)
        # tests/test_lint.py runs ruff with pyproject.toml's settings
        'test': ['pytest>=7', 'pytest-timeout', 'tensorboard', 'playwright',
                 'ruff>=0.5'] + BENCH_REQUIRES,
    },
)
