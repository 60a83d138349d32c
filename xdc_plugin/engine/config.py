"""Loading YAML configs with ``KEY=VALUE`` overrides that are checked."""
import difflib

import yaml
from mmengine.config import Config


class ConfigKeyError(KeyError):
    """An override names a key the config does not have."""

    def __str__(self):
        return self.args[0]


def parse_overrides(overrides):
    """``['a.b=1', '+c=[1, 2]']`` -> ``({'a.b': 1}, {'c': [1, 2]})``.

    Values are parsed as YAML (numbers, booleans, lists, null). A leading
    ``+`` adds a key that the config does not have yet.
    """
    existing, new = {}, {}
    for item in overrides:
        if '=' not in item:
            raise ValueError(f'override {item!r} is not KEY=VALUE')
        key, value = item.split('=', 1)
        target = new if key.startswith('+') else existing
        target[key.lstrip('+')] = yaml.safe_load(value)
    return existing, new


def _lookup(cfg, dotted):
    node, walked = cfg.to_dict(), []
    for part in dotted.split('.'):
        if isinstance(node, list) and part.isdigit() and int(part) < len(
                node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            keys = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, keys, n=3)
            where = '.'.join(walked) or 'the top level'
            hint = f' Did you mean {close}?' if close else ''
            raise ConfigKeyError(
                f'unknown config key {dotted!r}: {part!r} is not in {where}.'
                f'{hint} Prefix the override with + to add a new key.')
        walked.append(part)
    return node


def load_config(path, overrides=()):
    """Read a config file (YAML, Python or JSON) and apply overrides."""
    cfg = Config.fromfile(path)
    existing, new = parse_overrides(overrides)
    for key in existing:
        _lookup(cfg, key)
    cfg.merge_from_dict({**existing, **new})
    return cfg
