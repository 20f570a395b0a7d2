"""`seqvision predict`, `export` and `serve` end to end, on real files and real processes, with the small digits LSTM:
folders of pictures in every supported format, the three output formats, standard input, --no-preprocess, the
ONNX engine, bundles, exports checked against PyTorch, a real server stopped with Ctrl-C, and no Lightning in the
serving layer."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from seqvision.cli import main
from seqvision.data import load_dataset
from seqvision.serving.predict import Predictor
from tests.servers import free_port, wait_for_health

# Pictures per format, made from the first digits test images (upscaled 10x to 80x80, a 20-pixel dark border).
PER_FORMAT = 12
FORMATS = [("png", "PNG", "L"), ("jpeg", "JPEG", "RGB"), ("bmp", "BMP", "L"), ("gif", "GIF", "L"),
           ("tiff", "TIFF", "L"), ("webp", "WEBP", "RGB")]
# Folders per format, some nested, so the search has to recurse.
FOLDERS = {"png": "a-png", "jpeg": "b-jpeg/deeper", "bmp": "c-bmp", "gif": "d-gif/x/y", "tiff": "e-tiff",
           "webp": "f-webp/deeper"}
UPSCALE, BORDER = 10, 20
# The upscaled digits are prepared as the digits dataset's images are made (filling the frame) and read nearly as
# well as the 8x8 originals (0.96 for this model): measured 0.82 on the 72 pictures.
ACCURACY_FLOOR = 0.7
SUMMARY = re.compile(r"^(\d+) pictures in [\d.]+ s \(([\d,]+) images/s\), (\d+) without an answer$")
DIFFERENCE = re.compile(r"^largest absolute difference from PyTorch, batches of 1, 7 and 256 of (.+): (\S+)$")


def run_cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def upscaled(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit as a 120x120 picture: each pixel a 10x10 block, in a dark border the ink does not touch."""
    return np.pad(np.kron(image, np.ones((UPSCALE, UPSCALE), dtype=np.uint8)), BORDER)


@pytest.fixture(scope="module")
def digits_test():
    splits = load_dataset("digits")
    return splits.test_images, splits.test_labels


@pytest.fixture(scope="module")
def picture_tree(tmp_path_factory, digits_test):
    """A folder tree of pictures in all six formats, a blank picture, a text file named .png, and a .txt file;
    returns (root, {picture path: true label or None})."""
    images, labels = digits_test
    root = tmp_path_factory.mktemp("pictures")
    expected: dict[str, str | None] = {}
    for number, (suffix, pillow_format, mode) in enumerate(FORMATS):
        folder = root / FOLDERS[suffix]
        folder.mkdir(parents=True)
        for index in range(number * PER_FORMAT, (number + 1) * PER_FORMAT):
            path = folder / f"{index:03d}.{suffix}"
            Image.fromarray(upscaled(images[index])).convert(mode).save(path, format=pillow_format)
            expected[str(path)] = str(labels[index])
    Image.new("L", (120, 120), 0).save(root / "blank.png")
    expected[str(root / "blank.png")] = None
    (root / "notes").mkdir()
    (root / "notes" / "junk.png").write_text("these are my notes, not a picture\n")
    expected[str(root / "notes" / "junk.png")] = None
    (root / "notes" / "readme.txt").write_text("not a picture suffix: skipped\n")
    return root, expected


def check_summary(err: str, pictures: int, failed: int) -> None:
    (line,) = err.strip().splitlines()
    match = SUMMARY.match(line)
    assert match, line
    assert int(match[1]) == pictures and int(match[3]) == failed
    assert int(match[2].replace(",", "")) > 0


def probabilities_by_file(answers: list[dict]) -> dict[str, np.ndarray]:
    return {a["file"]: np.array(a["probabilities"]) for a in answers if "probabilities" in a}


def test_predict_a_folder_tree_in_every_format_as_table_json_and_csv(digits_run, picture_tree, capsys):
    root, expected = picture_tree
    names = sorted(expected)
    blank, junk = str(root / "blank.png"), str(root / "notes" / "junk.png")

    # JSON, with four classes per picture.
    code, out, err = run_cli(capsys, "predict", digits_run, root, "--format", "json", "--top-k", "4")
    assert code == 0
    answers = json.loads(out)
    assert [a["file"] for a in answers] == names, "every picture, searched recursively, in sorted order"
    check_summary(err, len(names), failed=2)
    by_file = {a["file"]: a for a in answers}
    assert set(by_file[blank]) == {"file", "error"} and by_file[blank]["error"].startswith("blank")
    assert set(by_file[junk]) == {"file", "error"} and "not a picture" in by_file[junk]["error"]
    correct = []
    for name, label in expected.items():
        if label is None:
            continue
        answer = by_file[name]
        assert "error" not in answer, answer
        top = answer["top_k"]
        assert len(top) == 4
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
        assert answer["predicted"] == top[0]["class"] and answer["probability"] == top[0]["probability"]
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-9
        assert answer["probability"] == max(answer["probabilities"])
        correct.append(answer["predicted"] == label)
    accuracy = float(np.mean(correct))
    with capsys.disabled():
        print(f"\nupscaled digits read correctly: {accuracy:.1%} of {len(correct)}")
    assert accuracy >= ACCURACY_FLOOR, f"only {accuracy:.1%} of the upscaled digits were read correctly"

    # The table: one line per file, the name padded to the longest, then three classes or the problem.
    code, out, err = run_cli(capsys, "predict", digits_run, root)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(names)
    width = max(map(len, names))
    for name, line in zip(names, lines, strict=True):
        assert line[:width].rstrip() == name and line[width:width + 2] == "  ", line
        rest = line[width + 2:]
        if name == blank:
            assert rest.startswith("blank")
        elif name == junk:
            assert "not a picture" in rest
        else:
            shown = re.findall(r"(\S+) +(\d+\.\d)%", rest)
            assert len(shown) == 3, line
            assert shown[0][0] == by_file[name]["predicted"]
            assert abs(float(shown[0][1]) - 100 * by_file[name]["probability"]) <= 0.05 + 1e-9
    check_summary(err, len(names), failed=2)

    # CSV, with two classes per picture.
    code, out, err = run_cli(capsys, "predict", digits_run, root, "--format", "csv", "--top-k", "2")
    assert code == 0
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header == ["file", "predicted", "probability", "top1", "top2", "problem"]
    assert [row[0] for row in rows] == names
    for row in rows:
        assert len(row) == len(header), row
        answer = by_file[row[0]]
        if "error" in answer:
            assert row[1:5] == ["", "", "", ""] and row[5] == answer["error"]
            continue
        assert row[1] == answer["predicted"] and abs(float(row[2]) - answer["probability"]) < 1e-6
        for cell, top in zip(row[3:5], answer["top_k"][:2], strict=True):
            name, probability = cell.split(":")
            assert name == top["class"] and abs(float(probability) - top["probability"]) < 1e-6
        assert row[5] == ""
    check_summary(err, len(names), failed=2)


@pytest.mark.slow
def test_predict_reads_one_picture_from_standard_input(digits_run, picture_tree, capsys, tmp_path):
    root, _ = picture_tree
    picture = root / FOLDERS["png"] / "000.png"
    code, out, _ = run_cli(capsys, "predict", digits_run, picture, "--format", "json")
    assert code == 0
    (from_file,) = json.loads(out)

    result = subprocess.run([sys.executable, "-m", "seqvision", "predict", str(digits_run), "-", "--format", "json"],
                            input=picture.read_bytes(), capture_output=True, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    (from_stdin,) = json.loads(result.stdout)
    assert from_stdin == {**from_file, "file": "-"}
    check_summary(result.stderr.decode(), 1, failed=0)


def test_no_preprocess_feeds_8x8_pictures_exactly_as_the_json_pixels_path(digits_run, digits_test, server, capsys,
                                                                          tmp_path):
    images = digits_test[0][:16]
    folder = tmp_path / "raw"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:02d}.png")
    code, out, err = run_cli(capsys, "predict", digits_run, folder, "--no-preprocess", "--format", "json")
    assert code == 0
    answers = json.loads(out)
    assert [a["file"] for a in answers] == [str(folder / f"{index:02d}.png") for index in range(len(images))]
    got = np.array([a["probabilities"] for a in answers])
    assert np.array_equal(got, Predictor.open(digits_run).probabilities(images))
    # The server's JSON pixels path, on a real server around the same run.
    response = httpx.post(f"{server.url}/predict/batch", json={"pixels": images.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    assert np.array_equal(got, np.array([p["probabilities"] for p in response.json()["predictions"]]))
    check_summary(err, len(images), failed=0)

    # A picture of another size is refused by name, with both shapes, and the others still answered.
    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(folder / "99-wrong-size.png")
    code, out, err = run_cli(capsys, "predict", digits_run, folder, "--no-preprocess", "--format", "json")
    assert code == 0
    *answered, wrong = json.loads(out)
    assert wrong["file"] == str(folder / "99-wrong-size.png") and set(wrong) == {"file", "error"}
    assert "12x10" in wrong["error"] and "8x8" in wrong["error"], wrong["error"]
    assert np.array_equal(np.array([a["probabilities"] for a in answered]), got)
    check_summary(err, len(images) + 1, failed=1)


@pytest.mark.slow
def test_onnx_engine_and_a_bundle_give_the_answers_of_torch_and_the_run(digits_run, picture_tree, capsys, tmp_path):
    root, _ = picture_tree
    code, out, _ = run_cli(capsys, "predict", digits_run, root, "--format", "json")
    assert code == 0
    torch_answers = json.loads(out)

    code, out, err = run_cli(capsys, "predict", digits_run, root, "--format", "json", "--engine", "onnx")
    assert code == 0
    onnx_answers = json.loads(out)
    assert [a["file"] for a in onnx_answers] == [a["file"] for a in torch_answers]
    assert [a.get("error") for a in onnx_answers] == [a.get("error") for a in torch_answers]
    expected, got = probabilities_by_file(torch_answers), probabilities_by_file(onnx_answers)
    assert got.keys() == expected.keys() and len(got) == len(FORMATS) * PER_FORMAT
    difference = max(float(np.abs(got[name] - expected[name]).max()) for name in got)
    assert difference < 1e-5, difference
    check_summary(err, len(torch_answers), failed=2)

    bundle = tmp_path / "bundle"
    code, out, _ = run_cli(capsys, "export", digits_run, "--format", "bundle", "--out", bundle)
    assert code == 0 and out.strip() == f"written: {bundle}"
    for engine in ("torch", "onnx"):
        code, out, _ = run_cli(capsys, "predict", bundle, root, "--format", "json", "--engine", engine)
        assert code == 0
        from_bundle = json.loads(out)
        assert [a.get("error") for a in from_bundle] == [a.get("error") for a in torch_answers]
        got = probabilities_by_file(from_bundle)
        assert got.keys() == expected.keys()
        for name in got:
            if engine == "torch":
                assert np.array_equal(got[name], expected[name]), name
            else:
                assert np.abs(got[name] - expected[name]).max() < 1e-5, name


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", "onnx"), ("torchscript", "pt")])
def test_export_to_a_file_reports_its_difference_from_pytorch(digits_run, capsys, tmp_path, fmt, suffix):
    target = tmp_path / f"model.{suffix}"
    code, out, _ = run_cli(capsys, "export", digits_run, "--format", fmt, "--out", target)
    assert code == 0
    written, measured = out.strip().splitlines()
    assert written == f"written: {target}"
    match = DIFFERENCE.match(measured)
    assert match, measured
    assert match[1] == "256 digits test images", "measured on real test images, not random ones"
    assert float(match[2]) < 1e-4, measured
    assert target.is_file() and target.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name], "no temporary file left behind"


def test_export_a_bundle_writes_the_weights_and_the_description(digits_run, capsys, tmp_path):
    bundle = tmp_path / "out" / "bundle"
    code, out, _ = run_cli(capsys, "export", digits_run, "--format", "bundle", "--out", bundle)
    assert code == 0 and out.strip() == f"written: {bundle}"
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "model.safetensors"]
    assert json.loads((bundle / "bundle.json").read_text())["model"] == "lstm"


@pytest.mark.parametrize("kind", ["missing", "empty"])
@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_source_that_is_no_run_or_bundle_is_one_error_line(digits_run, picture_tree, capsys, tmp_path, kind,
                                                             command):
    source = tmp_path / "not-a-run"
    if kind == "empty":
        source.mkdir()
    target = tmp_path / "bundle"
    argv = ["export", source, "--out", target] if command == "export" else ["predict", source, picture_tree[0]]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and str(source) in line, line
    assert not target.exists()


def test_serve_refuses_a_port_out_of_range(digits_run, capsys):
    code, out, err = run_cli(capsys, "serve", digits_run, "--port", "0")
    assert code == 2 and out == ""
    assert err.strip() == "error: --port must be between 1 and 65535, got 0."


@pytest.mark.slow
def test_serve_answers_and_stops_cleanly_on_ctrl_c(digits_run, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "seqvision", "serve", str(digits_run), "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = wait_for_health(url, process, 120)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text and "page.js" in page.text
        assert httpx.get(f"{url}/model", timeout=10).json()["dataset"] == "digits"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Finished server process" in err, err


@pytest.mark.slow
def test_serve_on_a_folder_that_is_no_run_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "seqvision", "serve", str(tmp_path), "--port", str(free_port())],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(tmp_path) in line, result.stderr


@pytest.mark.slow
def test_the_serving_layer_does_not_import_lightning(digits_run, tmp_path):
    probe = (
        "import sys\n"
        "import seqvision.serving.app, seqvision.serving.predict, seqvision.serving.export\n"
        "from seqvision.serving.app import create_app\n"
        "from seqvision.serving.predict import Predictor\n"
        f"predictor = Predictor.open({str(digits_run)!r})\n"
        "app = create_app(predictor)\n"
        "assert predictor.classes == tuple('0123456789')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lightning') or m.startswith('pytorch_lightning'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
