import os.path as osp

import pytest

from xdc_plugin.data.manifest import (AUDIO_EXTENSIONS, VIDEO_EXTENSIONS,
                                      extensions_for, read_file_list,
                                      summarize_manifest)


def _write(tmp_path, text, name='ann.csv', encoding='utf-8'):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return str(path)


def test_paths_relative_to_the_csv_or_data_root(tmp_path):
    ann = _write(tmp_path, 'path,label\na/x.mp4,cat\n/abs/y.mp4,dog\n')
    files = read_file_list(ann)
    assert files.paths == [str(tmp_path / 'a' / 'x.mp4'), '/abs/y.mp4']
    assert files.labels == ['cat', 'dog'] and files.label_column == 'label'
    files = read_file_list(ann, data_root='/videos')
    assert files.paths[0] == '/videos/a/x.mp4'


def test_bom_and_spaces_around_header_names_and_values(tmp_path):
    ann = _write(tmp_path, 'path, label\n x.mp4 , cat\ny.mp4,  dog\n',
                 encoding='utf-8-sig')
    files = read_file_list(ann)
    assert files.columns == ['path', 'label']
    assert files.paths[0] == str(tmp_path / 'x.mp4')
    assert files.labels == ['cat', 'dog']


def test_a_requested_label_column_must_exist(tmp_path):
    ann = _write(tmp_path, 'path,lable\nx.mp4,cat\n')
    with pytest.raises(ValueError, match=r"no 'label' column; its columns "
                       r"are \['path', 'lable'\]"):
        read_file_list(ann, label_column='label')
    # Not asked for: no labels, no error.
    files = read_file_list(ann)
    assert files.labels == [None] and files.label_column is None
    assert files.num_unlabelled == 0


def test_missing_labels_are_unlabelled_and_counted(tmp_path):
    ann = _write(tmp_path, 'path,kind\na.mp4,cat\nb.mp4,\nc.mp4,NaN\n'
                 'd.mp4,n/a\ne.mp4,null\nf.mp4,dog\n')
    files = read_file_list(ann, label_column='kind')
    assert files.labels == ['cat', None, None, None, None, 'dog']
    assert files.num_unlabelled == 4
    assert "4 rows without a 'kind' value" in files.summary()


def test_duplicates_are_reported(tmp_path):
    ann = _write(tmp_path, 'path,label\na.mp4,1\nb.mp4,2\n./a.mp4,1\n'
                 'b.mp4,3\n')
    files = read_file_list(ann)
    assert files.duplicates == [(2, 0), (3, 1)]
    assert len(files.paths) == 4  # kept: the dataset keeps what it is told
    assert '2 duplicate rows (line 4 repeats line 2, line 5 repeats ' \
        'line 3)' in files.summary()


@pytest.mark.parametrize('text, message', [
    ('', 'no "path" column'),
    ('path,label\n', 'lists no file'),
    ('path,label\n\n , \n', 'lists no file'),
    ('file,label\nx.mp4,1\n', r'no "path" column \(columns: \[.file'),
    ('path,label\nx.mp4,1\n,2\n', 'line 3 has no path'),
])
@pytest.mark.parametrize('read', [read_file_list, summarize_manifest])
def test_unusable_manifests_are_errors(tmp_path, text, message, read):
    with pytest.raises(ValueError, match=message):
        read(_write(tmp_path, text))


def test_summary_counts_rows_and_samples_missing_files(tmp_path):
    rows = []
    for i in range(1000):  # every 4th file exists
        if i % 4 == 0:
            (tmp_path / f'{i}.mp4').write_bytes(b'')
        rows.append(f'{i}.mp4 , c{i % 3}')
    text = '\ufeffpath, label\n' + '\n'.join(rows[:500]) + '\n\n' + \
        '\n'.join(rows[500:]) + '\n'
    ann = _write(tmp_path, text)
    summary = summarize_manifest(ann, sample_size=400, seed=1)
    assert summary.columns == ['path', 'label']
    assert summary.label_column == 'label'
    assert summary.num_rows == 1000 and summary.num_sampled == 400
    names = [osp.basename(p) for p in summary.missing]
    assert len(set(names)) == len(names)
    assert all(int(n[:-4]) % 4 for n in names)
    # A uniform sample: about 3/4 of it is missing, from the whole file.
    assert 250 <= len(names) <= 350
    assert min(int(n[:-4]) for n in names) < 100
    assert max(int(n[:-4]) for n in names) > 900
    assert summary.estimated_missing == round(len(names) / 400 * 1000)
    # Deterministic for a seed; every file checked when the sample is large.
    assert summarize_manifest(ann, sample_size=400, seed=1) == summary
    everything = summarize_manifest(ann, sample_size=5000)
    assert everything.num_sampled == 1000 and len(everything.missing) == 750


def test_summary_paths_relative_to_data_root(tmp_path):
    (tmp_path / 'media').mkdir()
    (tmp_path / 'media' / 'a.mp4').write_bytes(b'')
    ann = _write(tmp_path, 'path\na.mp4\n')
    assert len(summarize_manifest(ann).missing) == 1
    assert summarize_manifest(ann, data_root=str(tmp_path / 'media')
                              ).missing == []
    with pytest.raises(ValueError, match="no 'y' column"):
        summarize_manifest(ann, label_column='y')


def test_folder_scan(tmp_path):
    for name in ('b/2.mp4', 'a/1.MKV', 'c.wav', 'notes.txt'):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b'')
    files = read_file_list(data_root=str(tmp_path))
    assert [osp.relpath(p, tmp_path) for p in files.paths] == \
        ['a/1.MKV', 'b/2.mp4']
    assert files.rows == [dict(path='a/1.MKV'), dict(path='b/2.mp4')]
    audio = read_file_list(data_root=str(tmp_path),
                           extensions=extensions_for(('audio', )))
    assert len(audio.paths) == 3
    assert extensions_for(('video', 'audio')) == VIDEO_EXTENSIONS
    assert set(AUDIO_EXTENSIONS) < set(extensions_for(('audio', )))
    with pytest.raises(ValueError, match='holds no file'):
        read_file_list(data_root=str(tmp_path / 'b'), extensions=('.ogg', ))
    with pytest.raises(ValueError, match='needs a manifest'):
        read_file_list(data_root=str(tmp_path), label_column='label')
    with pytest.raises(ValueError, match='existing data_root'):
        read_file_list(data_root=str(tmp_path / 'nowhere'))


@pytest.mark.timeout(20)
@pytest.mark.parametrize('read', [read_file_list, summarize_manifest])
def test_a_manifest_that_is_no_csv_is_named(tmp_path, read):
    """A video given as manifest, a FIFO (an open would block), a folder
    and a missing file: one line naming the file, before any open."""
    import os

    from conftest import timecode_media

    from xdc_plugin.data.demo import write_mp4
    from xdc_plugin.data.manifest import ManifestError
    video = tmp_path / 'clip.mp4'
    write_mp4(str(video), *timecode_media(1.0), 10)
    os.mkfifo(tmp_path / 'fifo.csv')
    for source, says in (
            (video, 'is not UTF-8 CSV text (a media file?)'),
            (tmp_path / 'fifo.csv', 'is not a regular file'),
            (tmp_path, 'is not a regular file'),
            (tmp_path / 'gone.csv', 'No such file or directory')):
        with pytest.raises(ManifestError) as info:
            read(str(source))
        message = str(info.value)
        assert message.startswith(f'manifest {source}') and says in message
        assert '\n' not in message
