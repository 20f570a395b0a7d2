"""Where dataset files come from: a data folder, the user cache, system folders, or a verified download.

The search order is the one users expect from other toolkits: an explicit `--data-dir` (or
`$SEQVISION_DATA`), then `$XDG_CACHE_HOME/seqvision/<name>`, then `/usr/share/datasets/<name>`, and only
then the network. Downloads land in the cache under a temporary name and are renamed once their md5
matches, so a file under its final name is always complete.
"""

from __future__ import annotations

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


def find_in(folder: Path, files: Sequence[RemoteFile]) -> list[Path] | None:
    """Paths of all `files` in `folder` (gzipped or raw), or None unless every one is there."""
    found = []
    for remote in files:
        path = next((p for p in (folder / f"{remote.name}.gz", folder / remote.name) if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def download_file(remote: RemoteFile, mirrors: Sequence[str], target_dir: Path) -> Path:
    """Fetch `<mirror><name>.gz` from the first mirror that serves a file with the right md5."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{remote.name}.gz"
    failures = []
    for mirror in mirrors:
        url = f"{mirror}{remote.name}.gz"
        print(f"downloading {url}", file=sys.stderr, flush=True)
        try:
            with atomic_path(target) as partial:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, \
                        open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
                actual = md5_of(read_bytes(partial))
                if actual != remote.md5:
                    raise DatasetError(f"md5 of the content is {actual}, not the published {remote.md5}")
            return target
        except (OSError, http.client.HTTPException, DatasetError) as error:
            reason = getattr(error, "reason", None) or error
            failures.append(f"{url}: {reason}")
    raise DatasetError("\n  ".join(["every mirror failed:", *failures]))


def locate_files(name: str, files: Sequence[RemoteFile], mirrors: Sequence[str],
                 data_dir: Path | None) -> list[Path]:
    """Paths of the dataset's files, searching the folders in order and downloading into the cache last."""
    looked = []
    for folder, why in candidate_dirs(name, data_dir):
        found = find_in(folder, files)
        if found is not None:
            return found
        looked.append(f"{folder} ({why})")
    if os.environ.get("SEQVISION_NO_DOWNLOAD") == "1":
        failure = "downloads are disabled by SEQVISION_NO_DOWNLOAD=1"
    else:
        cache = cache_dir(name)
        try:
            # Files already cached by an earlier, interrupted download are kept; only missing ones are fetched.
            return [(find_in(cache, [remote]) or [download_file(remote, mirrors, cache)])[0] for remote in files]
        except DatasetError as error:
            failure = f"downloading failed, {error}"
        except OSError as error:
            failure = f"the download folder {cache} cannot be written ({error.strerror or error})"
    names = ", ".join(f"{remote.name}[.gz]" for remote in files)
    raise DatasetError(
        f"cannot find the {name} dataset. Looked for {names} in:\n  " + "\n  ".join(looked)
        + f"\nand {failure}.\nTo provide the files, put them (gzipped or not) in {cache_dir(name)}/, "
        f"or pass --data-dir DIR (or set SEQVISION_DATA=DIR) with the files in DIR/{name}/ or DIR itself."
    )


def read_verified(path: Path, remote: RemoteFile) -> bytes:
    """The uncompressed content of a local file, refused if its md5 is not the published one."""
    content = read_bytes(path)
    actual = md5_of(content)
    if actual != remote.md5:
        raise DatasetError(f"{path} has md5 {actual} but the published {remote.name} has {remote.md5}: the file is "
                           "damaged or a different file. Delete it (seqvision will download it again) or replace it.")
    return content
