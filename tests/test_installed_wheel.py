"""seqvision installed from its wheel, outside the checkout: the presets and the drawing page ship in the package,
a preset trains, and `seqvision serve` serves the trained model with its page.

The wheel is built from a copy of the checkout's sources and installed, without dependencies and without any
index, into a fresh virtual environment in a temporary folder. That environment sees the dependencies already
installed beside the test run (torch, lightning, ...) through a .pth line naming their site-packages folder. A
folder added that way does not get its own .pth files read, so the development environment's editable seqvision
(a .pth file pointing at src/) stays invisible: the test checks that `import seqvision` finds the wheel's copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_for_health

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PRESETS = ["bilstm-mnist", "renet-mnist", "seed-000-lstm", "seed-002-cnn", "seed-002-stacked-lstm", "seed-003-cnn-lstm"]
# What setuptools prints for `license = { text = ... }` and for "License ::" classifiers (both deprecated).
PAGE_FILES = ["seqvision/serving/page/index.html", "seqvision/serving/page/page.js"]
DEPRECATIONS = ["`project.license` as a TOML table is deprecated", "License classifiers are deprecated"]


def run(argv: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, (f"{argv} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n"
                                    f"--- stderr\n{result.stderr[-4000:]}")
    return result


def clean_env(tmp: Path) -> dict[str, str]:
    """The environment for the installed seqvision: no dataset root, no path into the checkout, caches in tmp."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"SEQVISION_DATA", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=str(home / "mpl"),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Build the wheel, install it into a fresh venv; the venv's bin folder, the wheel and the build log."""
    tmp = tmp_path_factory.mktemp("installed-wheel")
    assert not tmp.resolve().is_relative_to(REPO), "the fresh environment must live outside the checkout"
    env = clean_env(tmp)

    # Build from a copy, so the build writes no build/ or egg-info into the shared checkout and stale files
    # there cannot slip into the wheel.
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    wheels = tmp / "wheels"
    # -v: pip shows the build backend's output (setuptools' deprecation warnings) only when verbose.
    build = run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", wheels,
                 source], cwd=tmp, env=env, timeout=300)
    (wheel,) = wheels.glob("seqvision-*.whl")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp, env=env, timeout=300)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp, env=env, timeout=300)

    # The dependencies: the running interpreter's site-packages, one .pth line each (their own .pth files,
    # among them the editable seqvision's, are not processed).
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=tmp, env=env, timeout=60).stdout.strip()
    dev_paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site) / "seqvision-test-deps.pth").write_text("".join(f"{path}\n" for path in dev_paths))
    return {"bin": venv / "bin", "venv": venv, "wheel": wheel, "build_log": build.stdout + build.stderr,
            "env": env, "tmp": tmp}


def test_wheel_ships_the_presets_and_the_licence(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
        preset = wheel.read("seqvision/presets/seed-000-lstm.yaml").decode()
        metadata = wheel.read("seqvision-0.1.0.dist-info/METADATA").decode()
    assert {f"seqvision/presets/{name}.yaml" for name in PRESETS} <= names
    assert "seqvision/models/fused_rnn.cpp" in names, "the fused LSTM/GRU kernels are compiled from it on first use"
    assert "preset:" in preset and "reproduces:" in preset
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: MIT" in metadata


def test_wheel_builds_without_licence_deprecation_warnings(installed):
    log = installed["build_log"]
    assert "running bdist_wheel" in log, "pip did not show setuptools' output, so the check below would be void"
    for warning in DEPRECATIONS:
        assert warning not in log


def test_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    probe = "import sys, seqvision; print(seqvision.__file__); print(*sys.path, sep='\\n')"
    result = run([installed["bin"] / "python", "-c", probe], cwd=tmp_path, env=installed["env"], timeout=60)
    first, *search_path = result.stdout.splitlines()
    location = Path(first).resolve()
    assert location.is_relative_to(Path(installed["venv"]).resolve()), location
    assert not location.is_relative_to(REPO), location
    # The editable install's hook (a .pth line naming src/) stayed inactive: the checkout is not searched at all.
    assert not any(entry and Path(entry).resolve().is_relative_to(REPO / "src") for entry in search_path), search_path


def test_presets_command_lists_every_preset(installed, tmp_path):
    out = run([installed["bin"] / "seqvision", "presets"], cwd=tmp_path, env=installed["env"], timeout=120).stdout
    lines = out.splitlines()
    for name in PRESETS:
        assert name in lines, out
        at = lines.index(name)
        assert lines[at + 1].strip().startswith("reproduces:") and lines[at + 1].split(":", 1)[1].strip(), out
        assert lines[at + 2].strip().startswith("result:") and lines[at + 2].split(":", 1)[1].strip(), out


@pytest.fixture(scope="module")
def trained(installed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A run trained by the installed `seqvision` from a preset (one epoch on the digits), in a folder outside the
    checkout; its stdout and its folder."""
    cwd = tmp_path_factory.mktemp("installed-run")
    out = cwd / "run"
    result = run([installed["bin"] / "seqvision", "train", "--config", "seed-000-lstm", "--dataset", "digits",
                  "--epochs", "1", "--no-progress", "--no-report", "--out", out],
                 cwd=cwd, env=installed["env"], timeout=600)
    return {"stdout": result.stdout, "run": out, "cwd": cwd}


def test_a_preset_trains_from_the_installed_package(trained):
    out = trained["run"]
    assert "test accuracy" in trained["stdout"]
    assert (out / "config.yaml").is_file()
    assert (out / "checkpoints" / "best.ckpt").is_file()


def test_wheel_ships_the_drawing_page(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
        index = wheel.read(PAGE_FILES[0]).decode()
    assert set(PAGE_FILES) <= names
    assert "page.js" in index


def test_installed_package_serves_its_page_and_answers(installed, trained, tmp_path):
    """Export the trained run as a bundle, then serve the bundle: both with the installed `seqvision`, from a folder
    outside the checkout, so the page must come from the installed package."""
    bundle = tmp_path / "bundle"
    run([installed["bin"] / "seqvision", "export", trained["run"], "--format", "bundle", "--out", bundle],
        cwd=tmp_path, env=installed["env"], timeout=300)
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "model.safetensors"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A proxy variable in the environment must not route the requests to 127.0.0.1 elsewhere.
    client = httpx.Client(trust_env=False, timeout=10)
    process = subprocess.Popen([str(installed["bin"] / "seqvision"), "serve", str(bundle), "--port", str(port)],
                               cwd=tmp_path, env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        health = wait_for_health(url, process, 180, client)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        page = client.get(f"{url}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "page.js" in page.text
        script = client.get(f"{url}/page.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.text.strip()
        model = client.get(f"{url}/model").json()
        assert model["dataset"] == "digits" and model["source"] == str(bundle)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err[-4000:]
