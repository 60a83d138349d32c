from setuptools import find_packages, setup

setup(
    name='xdc_plugin',
    version='0.1.0',
    description='Cross-modal audio-video clustering (XDC) pretraining for '
                'mmengine / mmaction2',
    packages=find_packages(include=['xdc_plugin', 'xdc_plugin.*']),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.4,<2.15',
        'torchvision>=0.19,<0.30',
        'torchaudio>=2.4,<2.12',
        'numpy',
        'mmengine>=0.10.4,<0.11',
        'mmcv-lite==2.1.0',
        'mmaction2==1.2.0',
        # mmaction2 1.2.0 imports it without declaring it.
        'importlib-metadata',
        'pytorchvideo==0.1.5',
        'av>=11',
        'faiss-cpu>=1.7.4',
        'fvcore',
        'iopath',
        'submitit>=1.4',
        'scikit-learn>=1.2',
        'tqdm',
        'pyyaml',
        # the cluster gallery (xdc_plugin.visualization)
        'jinja2>=3',
        'matplotlib>=3.5',
        'pillow',
    ],
    package_data={'xdc_plugin.visualization': ['templates/*.html']},
    extras_require={
        # live curves: mmengine's TensorboardVisBackend
        'tensorboard': ['tensorboard'],
        'test': ['pytest>=7', 'pytest-timeout', 'tensorboard', 'playwright'],
    },
)
