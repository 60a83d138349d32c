"""Print the released XDC models: name, pretraining data, the release's
UCF101/HMDB51 accuracies and file names.

    python tools/list_pretrained.py
"""
import xdc_plugin  # noqa: F401  (host fixes, registries)
from xdc_plugin.models.pretrained import list_pretrained


def main():
    print(list_pretrained())


if __name__ == '__main__':
    main()
