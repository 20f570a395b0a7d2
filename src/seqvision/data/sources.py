"""Where dataset files come from: a data folder, the user cache, system folders, or a verified download.

The search order is the one users expect from other toolkits: an explicit `--data-dir` (or
`$SEQVISION_DATA`), then `$XDG_CACHE_HOME/seqvision/<name>`, then `/usr/share/datasets/<name>`, and only
then the network. Downloads land in the cache under a temporary name and are renamed once their md5
matches, so a file under its final name is always complete.

A checksum is checked at the level it is published at: MNIST's md5s are of the uncompressed IDX content
(`RemoteFile`), newer releases publish the md5 of the archive they ship (`PublishedFile`: a .gz, .zip or
.tar.gz). Files the user extracted from an archive, with no published checksum, are `ExtractedFile`s.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqvision.atomic import atomic_path
from seqvision.data.idx import md5_of, read_bytes
from seqvision.errors import DatasetError

SYSTEM_DATASET_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
DOWNLOAD_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class RemoteFile:
    """One dataset file: its name without .gz, and the md5 of its uncompressed content."""

    name: str
    md5: str

    @property
    def local_names(self) -> tuple[str, ...]:
        return f"{self.name}.gz", self.name

    @property
    def download_name(self) -> str:
        return f"{self.name}.gz"

    @property
    def label(self) -> str:
        return f"{self.name}[.gz]"

    def problem(self, path: Path) -> str | None:
        """Why the file at `path` is not this one, or None when its uncompressed content has the published md5."""
        actual = md5_of(read_bytes(path))
        return None if actual == self.md5 else f"md5 of the content is {actual}, not the published {self.md5}"


@dataclass(frozen=True)
class PublishedFile:
    """One file exactly as a dataset's authors publish it (a .gz, a .zip, a .tar.gz), under the name it has on
    the mirrors (a path inside the dataset folder for a file of an extracted archive), with the published md5
    of its bytes as they are: an archive is checked before anything is read out of it."""

    name: str
    md5: str

    @property
    def local_names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def download_name(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return self.name

    def problem(self, path: Path) -> str | None:
        """Why the file at `path` is not this one, or None when its bytes have the published md5."""
        actual = file_md5(path)
        return None if actual == self.md5 else f"md5 of the file is {actual}, not the published {self.md5}"


@dataclass(frozen=True)
class ExtractedFile:
    """A file users unpack from a published archive and for which no checksum is published (a gunzipped IDX file):
    found locally but never downloaded; its loader checks its shape and size against the release instead."""

    name: str

    @property
    def local_names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def label(self) -> str:
        return self.name


DatasetFile = RemoteFile | PublishedFile | ExtractedFile


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes as stored (not uncompressed), read in chunks: archives run to hundreds of MB."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from None


def verify_published(path: Path, published: PublishedFile) -> Path:
    """`path`, refused if its md5 is not the published one (a damaged download, or another file of that name)."""
    actual = file_md5(path)
    if actual != published.md5:
        raise DatasetError(f"{path} has md5 {actual} but the published {published.name} has {published.md5}: the "
                           "file is damaged or a different file. Delete it (seqvision will download it again) or "
                           "replace it.")
    return path


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqvision" / name


def candidate_dirs(name: str, data_dir: Path | None) -> list[tuple[Path, str]]:
    """Folders to search, in order, each with a note on why it is searched."""
    candidates = []
    explicit, why = data_dir, "--data-dir"
    if explicit is None:
        explicit, why = os.environ.get("SEQVISION_DATA"), "$SEQVISION_DATA"
    if explicit:
        candidates += [(Path(explicit) / name, why), (Path(explicit), why)]
    candidates.append((cache_dir(name), "user cache"))
    candidates += [(folder / name, "system datasets") for folder in SYSTEM_DATASET_DIRS]
    return candidates


def find_in(folder: Path, files: Sequence[DatasetFile]) -> list[Path] | None:
    """Paths of all `files` in `folder` (each under the first of its local names there), or None unless every one is
    there."""
    found = []
    for remote in files:
        path = next((folder / name for name in remote.local_names if (folder / name).is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def download_file(remote: RemoteFile | PublishedFile, mirrors: Sequence[str], target_dir: Path) -> Path:
    """Fetch `<mirror><download name>` from the first mirror that serves a file with the right md5."""
    target = target_dir / remote.download_name
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{remote.download_name}"
        print(f"downloading {url}", file=sys.stderr, flush=True)
        try:
            with atomic_path(target) as partial:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, \
                        open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
                problem = remote.problem(partial)
                if problem is not None:
                    raise DatasetError(problem)
            return target
        except (OSError, http.client.HTTPException, DatasetError) as error:
            reason = getattr(error, "reason", None) or error
            failures.append(f"{url}: {reason}")
    raise DatasetError("\n  ".join(["every mirror failed:", *failures]))


def locate_files(name: str, files: Sequence[RemoteFile | PublishedFile], mirrors: Sequence[str],
                 data_dir: Path | None) -> list[Path]:
    """Paths of the dataset's files, searching the folders in order and downloading into the cache last."""
    return locate_layout(name, [files], mirrors, data_dir)[1]


def locate_layout(name: str, layouts: Sequence[Sequence[DatasetFile]], mirrors: Sequence[str],
                  data_dir: Path | None, *, folder_name: str | None = None) -> tuple[int, list[Path]]:
    """Which of the ways a dataset can lie on disk was found, and its paths. `layouts[0]` is the files as published,
    the only one downloaded (into the cache, when no folder holds any layout); the others are forms users unpack
    them into. In each folder, in search order, the first complete layout wins. Datasets published in one archive
    share its folder (`folder_name`, default `name`), so it is downloaded once."""
    folder_name = folder_name or name
    looked = []
    for folder, why in candidate_dirs(folder_name, data_dir):
        for number, files in enumerate(layouts):
            found = find_in(folder, files)
            if found is not None:
                return number, found
        looked.append(f"{folder} ({why})")
    if os.environ.get("SEQVISION_NO_DOWNLOAD") == "1":
        failure = "downloads are disabled by SEQVISION_NO_DOWNLOAD=1"
    else:
        cache = cache_dir(folder_name)
        try:
            # Files already cached by an earlier, interrupted download are kept; only missing ones are fetched.
            return 0, [(find_in(cache, [remote]) or [download_file(remote, mirrors, cache)])[0]
                       for remote in layouts[0]]
        except DatasetError as error:
            failure = f"downloading failed, {error}"
        except OSError as error:
            failure = f"the download folder {cache} cannot be written ({error.strerror or error})"
    names = "; or ".join(", ".join(remote.label for remote in files) for files in layouts)
    raise DatasetError(
        f"cannot find the {name} dataset. Looked for {names} in:\n  " + "\n  ".join(looked)
        + f"\nand {failure}.\nTo provide the files, put them in {cache_dir(folder_name)}/, "
        f"or pass --data-dir DIR (or set SEQVISION_DATA=DIR) with the files in DIR/{folder_name}/ or DIR itself."
    )


def read_verified(path: Path, remote: RemoteFile) -> bytes:
    """The uncompressed content of a local file, refused if its md5 is not the published one."""
    content = read_bytes(path)
    actual = md5_of(content)
    if actual != remote.md5:
        raise DatasetError(f"{path} has md5 {actual} but the published {remote.name} has {remote.md5}: the file is "
                           "damaged or a different file. Delete it (seqvision will download it again) or replace it.")
    return content
