"""Loading configs with ``KEY=VALUE`` overrides checked at the key.

An override of an existing key must name a key the config has and give a
value of the type of the value it replaces; the exceptions are an int
where a float is expected, ``null``, a number written for a string key
(kept as written) and a float written ``1e-3`` (YAML reads it as a string).
A leading ``+`` sets a key without these checks: a new key, or a value of
another type.

``check_dataloaders`` checks the loader values that torch would refuse only
when the loader is built (``num_workers=-1``), so that the dry run and the
launcher stop before any work. Every error here is one of
``CONFIG_ERRORS``: a command line prints its message as one line.
"""
import difflib
import os.path as osp
from typing import Any, Dict, Iterable, Sequence, Tuple

import yaml
from mmengine.config import Config

from xdc_plugin.compat import (package_utils_without_pkg_resources,
                               safe_yaml_configs)


# xdc_plugin/, two folders above this file (xdc_plugin/engine/runner/).
_PACKAGE = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def shipped_config(name: str) -> str:
    """Path of one of the configs we ship: ``xdc_plugin/configs/<name>``
    (package data of an installed wheel) or ``configs/<name>`` beside the
    package (a source checkout, editable install)."""
    for root in (osp.join(_PACKAGE, 'configs'),
                 osp.join(osp.dirname(_PACKAGE), 'configs')):
        path = osp.join(root, name)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'{name} is not among the shipped configs '
                            f'(looked in {_PACKAGE}/configs and beside the '
                            'package)')


class ConfigKeyError(KeyError):
    """An override names a key the config does not have."""

    def __str__(self):
        return self.args[0]


class ConfigTypeError(TypeError):
    """An override gives a value of the wrong type for its key."""


class ConfigOverrideError(ValueError):
    """An override that is not ``KEY=VALUE`` with a plain YAML value."""


class ConfigFileError(ValueError):
    """A config file that cannot be read safely (a YAML Python tag, bad
    YAML) or at all (missing)."""


class ConfigValueError(ValueError):
    """A config value that the run would refuse only deep in its build."""


CONFIG_ERRORS = (ConfigFileError, ConfigKeyError, ConfigOverrideError,
                 ConfigTypeError, ConfigValueError)


def _split(item):
    if '=' not in item:
        raise ConfigOverrideError(f'override {item!r} is not KEY=VALUE')
    return item.split('=', 1)


def parse_overrides(
        overrides: Iterable[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``['a.b=1', '+c=[1, 2]']`` -> ``({'a.b': 1}, {'c': [1, 2]})``.

    Values are parsed as YAML (numbers, booleans, lists, null). A leading
    ``+`` adds a key that the config does not have yet.
    """
    existing, new = {}, {}
    for item in overrides:
        key, text = _split(item)
        target = new if key.startswith('+') else existing
        try:
            target[key.lstrip('+')] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = ' '.join(str(exc).split())
            raise ConfigOverrideError(
                f'override {item!r}: its value is not plain YAML '
                f'({problem})') from exc
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


def _type_name(value):
    return type(value).__name__


def checked_value(key: str, current: Any, value: Any, text: str) -> Any:
    """``value`` (parsed from ``text``) if it may replace ``current`` at
    ``key``, converted where the exceptions above apply; else
    :class:`ConfigTypeError` naming the key, the value and the type."""
    if value is None or current is None:
        return value
    scalar = (bool, int, float, str)
    if isinstance(current, str) and isinstance(value, scalar):
        return text  # a path or name that YAML read as a number
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, float):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                ok = False
        else:
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
    elif isinstance(current, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ConfigTypeError(
            f'config key {key!r} expects {_type_name(current)} (its current '
            f'value is {current!r}), got {_type_name(value)} {value!r} from '
            f'{key}={text}. Prefix the override with + to set a value of '
            'another type.')
    return value


def load_config(path: str, overrides: Sequence[str] = ()) -> Config:
    """Read a config file (YAML, Python or JSON) and apply overrides.

    YAML (the file and its ``_base_`` files) is read with PyYAML's safe
    loader: a Python tag is refused, never run. A Python config is code
    and runs as such: use only Python configs you trust."""
    if not osp.isfile(path):
        raise ConfigFileError(f'config file {path}: ' + (
            'not a regular file' if osp.exists(path) else 'no such file'))
    try:
        with package_utils_without_pkg_resources(), safe_yaml_configs():
            cfg = Config.fromfile(path)
    except yaml.YAMLError as exc:
        problem = ' '.join(str(exc).split())
        raise ConfigFileError(
            f'{path} (or one of its _base_ files) is not a plain YAML '
            f'config: {problem}. Python tags are refused, never run.'
        ) from exc
    existing, new = parse_overrides(overrides)
    texts = dict(_split(item) for item in overrides)
    for key in existing:
        existing[key] = checked_value(key, _lookup(cfg, key), existing[key],
                                      texts[key])
    for key, value in new.items():
        if isinstance(value, dict) and _holds_non_dict(cfg, key):
            # mmengine merges a dict into a non-dict only when told to
            # replace it.
            new[key] = {'_delete_': True, **value}
    cfg.merge_from_dict({**existing, **new})
    return cfg


def _holds_non_dict(cfg, key):
    """Whether ``key`` exists in ``cfg`` with a value that is not a dict."""
    try:
        return not isinstance(_lookup(cfg, key), dict)
    except ConfigKeyError:
        return False


def _dataloaders(node, key=''):
    """``(dotted key, dict)`` of every ``*dataloader`` dict in ``node``."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, (list, tuple)) else ()
    for name, value in items:
        dotted = f'{key}.{name}' if key else str(name)
        if isinstance(value, dict) and str(name).endswith('dataloader'):
            yield dotted, value
        yield from _dataloaders(value, dotted)


def check_dataloaders(cfg: Config) -> None:
    """``ConfigValueError`` naming the first dataloader of ``cfg`` (the
    train, val and test loaders, the clustering hook's
    ``extract_dataloader``, ...) whose ``num_workers`` is not an integer >=
    0 or ``batch_size`` not an integer >= 1 (None: no batching)."""
    for key, loader in _dataloaders(cfg.to_dict()):
        for name, least in (('num_workers', 0), ('batch_size', 1)):
            value = loader.get(name, least)
            if name == 'batch_size' and value is None:
                continue
            if type(value) is not int or value < least:
                raise ConfigValueError(
                    f'{key}.{name} must be an integer >= {least}, got '
                    f'{value!r}')
