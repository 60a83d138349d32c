"""tables.py: the package's one table format."""
from xdc_plugin.tables import markdown_table


def test_markdown_table_writes_header_rule_and_rows_of_any_cells():
    assert markdown_table(('name', 'n', 'share'),
                          [('a', 3, 0.5), ['b', None, '']]) == (
        '| name | n | share |\n'
        '|---|---|---|\n'
        '| a | 3 | 0.5 |\n'
        '| b | None |  |')


def test_markdown_table_without_rows_is_its_header():
    assert markdown_table(['x'], iter(())) == '| x |\n|---|'
