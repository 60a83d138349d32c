"""The one table format of the package's reports: markdown, which reads in
a terminal and a log and pastes into the project page as it is (the
evaluation tools, the clustering hook's history, the GPU check, the
benchmarks). Standard library only."""
from typing import Iterable, Sequence


def markdown_table(header: Sequence[object],
                   rows: Iterable[Sequence[object]]) -> str:
    """A markdown table of ``header`` and ``rows`` (cells as ``str()``)."""
    return '\n'.join(['| ' + ' | '.join(map(str, header)) + ' |',
                      '|' + '---|' * len(header)] +
                     ['| ' + ' | '.join(map(str, row)) + ' |'
                      for row in rows])
