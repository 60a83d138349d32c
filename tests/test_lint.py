"""The repository passes its linter: ruff with the settings of
``pyproject.toml`` (pycodestyle and pyflakes at 79 columns) over every
Python file the project ships or tests with."""
import os.path as osp
import shutil
import subprocess

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def ruff_check(*paths):
    ruff = shutil.which('ruff')
    assert ruff, 'ruff is not installed: pip install -e ".[cpu,test]"'
    return subprocess.run([ruff, 'check', '--output-format', 'concise',
                           *paths], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=120)


def test_the_repository_passes_ruff():
    done = ruff_check('.')
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_reports_what_it_is_configured_for(tmp_path):
    # The settings reach the check: a long line, an unused import and an
    # undefined name in a file under the repository's configuration.
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\n\n\ndef f():\n    return undefined_name  '
                   '# ' + 'x' * 80 + '\n')
    done = ruff_check('--config', osp.join(REPO_DIR, 'pyproject.toml'),
                      str(bad))
    assert done.returncode == 1
    for code in ('E501', 'F401', 'F821'):
        assert code in done.stdout, done.stdout
