"""Finding dataset files and downloading them, against a real HTTP server on 127.0.0.1."""

import functools
import http.server
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from seqvision.data import load_dataset
from seqvision.data.idx import read_idx
from seqvision.data.sources import cache_dir, download_file, locate_files
from seqvision.errors import DatasetError

from .conftest import FILE_NAMES, tiny_arrays


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """Start HTTP servers on 127.0.0.1 over folders; return each one's base URL. Stopped after the test."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_mirror() -> str:
    """A URL on a loopback port where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".")]


def test_download_verifies_and_renames(tiny_dataset, serve, tmp_path):
    served, remotes = tiny_dataset
    target = tmp_path / "cache"
    path = download_file(remotes[0], [serve(served)], target)
    assert path == target / "train-images-idx3-ubyte.gz"
    np.testing.assert_array_equal(read_idx(path), tiny_arrays()[0])
    assert no_partial_files(target)


def test_dead_mirror_then_good_one(tiny_dataset, serve, dead_mirror, tmp_path):
    served, remotes = tiny_dataset
    path = download_file(remotes[1], [dead_mirror, serve(served)], tmp_path / "cache")
    np.testing.assert_array_equal(read_idx(path), tiny_arrays()[1])


def test_missing_file_on_a_mirror_then_good_one(tiny_dataset, serve, tmp_path):
    served, remotes = tiny_dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    path = download_file(remotes[2], [serve(empty), serve(served)], tmp_path / "cache")
    assert path.is_file()


def test_corrupt_file_is_rejected_not_kept(tiny_dataset, serve, tmp_path):
    served, remotes = tiny_dataset
    corrupt = tmp_path / "corrupt"
    shutil.copytree(served, corrupt)
    # Same size, same valid IDX header, different pixels: only the md5 can tell.
    from seqvision.data.idx import write_idx

    write_idx(corrupt / "train-images-idx3-ubyte.gz", tiny_arrays(seed=99)[0])
    target = tmp_path / "cache"
    with pytest.raises(DatasetError, match=r"every mirror failed:\n  http://127.0.0.1:\d+/train-images-idx3-ubyte.gz: "
                                           r"md5 of the content is [0-9a-f]{32}, not the published"):
        download_file(remotes[0], [serve(corrupt)], target)
    assert not (target / "train-images-idx3-ubyte.gz").exists()
    assert no_partial_files(target)

    path = download_file(remotes[0], [serve(corrupt), serve(served)], target)
    np.testing.assert_array_equal(read_idx(path), tiny_arrays()[0])


def test_every_mirror_failing_lists_each(tiny_dataset, dead_mirror, serve, tmp_path):
    _, remotes = tiny_dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as failure:
        download_file(remotes[0], [dead_mirror, serve(empty)], tmp_path / "cache")
    message = str(failure.value)
    assert f"{dead_mirror}train-images-idx3-ubyte.gz: " in message and "refused" in message
    assert "File not found" in message or "404" in message


def test_locate_downloads_into_the_cache_when_nothing_is_local(tiny_dataset, serve):
    served, remotes = tiny_dataset
    paths = locate_files("tiny", remotes, [serve(served)], None)
    assert [p.parent for p in paths] == [cache_dir("tiny")] * 4
    # Once cached, no mirror is needed any more.
    assert locate_files("tiny", remotes, [], None) == paths


def put_files(folder: Path, gz: bool = True) -> Path:
    from seqvision.data.idx import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FILE_NAMES, tiny_arrays(), strict=True):
        write_idx(folder / (f"{name}.gz" if gz else name), array)
    return folder


@pytest.mark.parametrize("layout", ["root/name", "folder itself"])
def test_data_dir_layouts(tiny_dataset, tmp_path, layout):
    _, remotes = tiny_dataset
    root = tmp_path / "data"
    folder = put_files(root / "tiny" if layout == "root/name" else root, gz=False)
    assert locate_files("tiny", remotes, [], root)[0] == folder / "train-images-idx3-ubyte"


def test_environment_variable_and_precedence(tiny_dataset, tmp_path, monkeypatch):
    _, remotes = tiny_dataset
    put_files(cache_dir("tiny"))
    assert locate_files("tiny", remotes, [], None)[0].parent == cache_dir("tiny")
    env_root = tmp_path / "env"
    put_files(env_root / "tiny")
    monkeypatch.setenv("SEQVISION_DATA", str(env_root))
    assert locate_files("tiny", remotes, [], None)[0].parent == env_root / "tiny"
    explicit = put_files(tmp_path / "explicit")
    assert locate_files("tiny", remotes, [], explicit)[0].parent == explicit


def test_system_folder_is_searched(tiny_dataset, tmp_path):
    _, remotes = tiny_dataset
    system = put_files(tmp_path / "system" / "tiny")
    assert locate_files("tiny", remotes, [], None)[0].parent == system


def test_incomplete_folder_does_not_count(tiny_dataset, tmp_path, monkeypatch):
    _, remotes = tiny_dataset
    folder = put_files(tmp_path / "data" / "tiny")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("SEQVISION_NO_DOWNLOAD", "1")
    with pytest.raises(DatasetError, match="cannot find the tiny dataset"):
        locate_files("tiny", remotes, [], tmp_path / "data")


def test_offline_message_lists_where_it_looked_and_how_to_fix(tiny_dataset, tmp_path, monkeypatch, dead_mirror):
    _, remotes = tiny_dataset
    with pytest.raises(DatasetError) as failure:
        locate_files("tiny", remotes, [dead_mirror], tmp_path / "nowhere")
    message = str(failure.value)
    for expected in (str(tmp_path / "nowhere" / "tiny"), str(cache_dir("tiny")), str(tmp_path / "system" / "tiny"),
                     f"{dead_mirror}train-images-idx3-ubyte.gz", "--data-dir", "SEQVISION_DATA"):
        assert expected in message
    assert no_partial_files(cache_dir("tiny"))


def test_local_file_with_the_wrong_md5_is_named(tmp_path, monkeypatch):
    folder = put_files(tmp_path / "data" / "mnist")  # tiny files under MNIST's names: md5s cannot match
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz has md5 [0-9a-f]{32} but the published "
                                           r"train-images-idx3-ubyte has 6bbc9ace898e44ae57da46a324031adb"):
        load_dataset("mnist", folder.parent)


def test_no_download_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQVISION_NO_DOWNLOAD", "1")
    with pytest.raises(DatasetError, match="downloads are disabled by SEQVISION_NO_DOWNLOAD=1"):
        load_dataset("fashion-mnist")


def test_only_missing_files_are_downloaded(tiny_dataset, serve, tmp_path):
    served, remotes = tiny_dataset
    cached = put_files(cache_dir("tiny"))
    (cached / "t10k-labels-idx1-ubyte.gz").unlink()
    only_labels = tmp_path / "only-labels"
    only_labels.mkdir()
    shutil.copy(served / "t10k-labels-idx1-ubyte.gz", only_labels)
    paths = locate_files("tiny", remotes, [serve(only_labels)], None)
    assert [p.parent for p in paths] == [cached] * 4


def test_unwritable_cache_is_reported(tiny_dataset, serve, tmp_path, monkeypatch):
    served, remotes = tiny_dataset
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(DatasetError, match=r"the download folder .*not-a-folder/seqvision/tiny cannot be written"):
        locate_files("tiny", remotes, [serve(served)], None)
