"""Frozen-feature evaluation: encoders from any source, features per file,
the UCF101/HMDB51 and audio benchmarks; the protocols they run are in
``xdc_plugin.probe``.

Nothing is imported here eagerly: a tool imports the module it needs, and
the encoder loaders (which import mmengine and the data stack) load only
when asked for.
"""
