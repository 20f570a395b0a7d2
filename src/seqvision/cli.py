"""The `seqvision` command: parses arguments, then calls the library API. No logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from seqvision import __version__
from seqvision.config import CHOICES, DEFAULTS, GROUPS, TrainConfig, flag
from seqvision.errors import SeqvisionError, SeqvisionWarning, TrainingInterruptedError

TRAIN_EXAMPLES = """examples:
  seqvision train --model lstm --dataset mnist          the row-LSTM with the defaults above (~99% on MNIST)
  seqvision train --config seed-002-cnn --epochs 3      a preset (seqvision presets), with one value changed

Shell completion of commands, options and their values: eval "$(register-python-argcomplete seqvision)"
"""
PROGRESS_FROM = 200  # pictures: a progress bar for folders larger than this
DATA_DIR_HELP = next(f.metadata["help"] for f in dataclasses.fields(TrainConfig) if f.name == "data_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqvision", description="Classify images with recurrent neural networks.")
    parser.add_argument("--version", action="version", version=f"seqvision {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run folder",
                                description="Train a model; defaults are in brackets.", epilog=TRAIN_EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = _add_train_options(train)
    groups["run"].add_argument("--config", metavar="FILE|PRESET",
                               help="start from a config file or a preset (see `seqvision presets`); "
                                    "flags given here override it")
    groups["run"].add_argument("--out", type=Path, metavar="DIR", help="run folder to create [runs/MODEL-DATASET-TIME]")
    groups["run"].add_argument("--resume", type=Path, metavar="RUN_DIR",
                               help="continue an interrupted run, or extend a finished one with --epochs N")
    groups["run"].add_argument("--no-progress", action="store_true", help="print nothing while training")
    groups["run"].add_argument("--no-report", action="store_true",
                               help="skip the report (seqvision report writes it later)")

    evaluate = commands.add_parser("eval", help="re-evaluate a saved run on its test set")
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--checkpoint", default="best", help="best, last or interrupted [best]")
    evaluate.add_argument("--data-dir", type=Path, metavar="DIR", help=DATA_DIR_HELP)

    report = commands.add_parser("report", help="write a run's metrics, pictures, report.html and report.md",
                                 description="Evaluate a run's checkpoint on its test set and write every metric "
                                             "(JSON, CSV), the pictures, one self-contained HTML page and a "
                                             "Markdown summary into the run folder.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--checkpoint", default="best", help="best, last or interrupted [best]")
    report.add_argument("--data-dir", type=Path, metavar="DIR", help=DATA_DIR_HELP)
    report.add_argument("--image", type=int, default=0, metavar="N",
                        help="test image whose LSTM gates are drawn [0]")

    compare = commands.add_parser("compare", help="train several models with several seeds, or compare run folders",
                                  description="Train each MODEL with --seeds seeds (train options apply to all) "
                                              "and write comparison.md, comparison.csv and "
                                              "val_accuracy_vs_time.png into --out; or compare --runs folders.")
    compare.add_argument("models", nargs="*", metavar="MODEL")
    compare.add_argument("--runs", nargs="+", type=Path, default=[], metavar="RUN_DIR",
                         help="compare these finished run folders instead of training")
    compare.add_argument("--seeds", type=int, default=1, help="seeds per model [1]")
    compare.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder [runs/compare]")
    _add_shared_train_options(compare, skip=frozenset({"model"}))

    cv = commands.add_parser("cv", help="stratified k-fold cross-validation on the training set",
                             description="Train one model per fold (train options apply) and report the "
                                         "accuracy on the held-out folds, mean +/- std.")
    cv.add_argument("--folds", type=int, default=5, help="number of folds [5]")
    cv.add_argument("--out", type=Path, default=Path("runs/cv"), help="output folder [runs/cv]")
    _add_shared_train_options(cv, skip=frozenset())

    _add_tune_parser(commands)

    predict = commands.add_parser("predict", help="classify your own pictures with a trained model",
                                  description="Classify PNG, JPEG, BMP, GIF, TIFF or WebP pictures (folders are "
                                              "searched recursively; - reads one picture from standard input). "
                                              "Each picture is made MNIST-like first: greyscale, light ink on "
                                              "dark, cropped to the ink, fitted and centred.")
    predict.add_argument("source", metavar="RUN_OR_BUNDLE", help="a run folder or a bundle (seqvision export)")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown per picture [3]")
    predict.add_argument("--format", default="table", choices=("table", "json", "csv"), help="output [table]")
    predict.add_argument("--engine", default="torch", choices=("torch", "onnx"), help="inference engine [torch]")
    predict.add_argument("--no-preprocess", action="store_true",
                         help="feed pictures already in the dataset's format (size, polarity) as they are")

    export = commands.add_parser("export", help="export a run as a portable bundle, ONNX or TorchScript",
                                 description="bundle: a folder with the weights in safetensors and a JSON "
                                             "description (seqvision predict/serve read it); onnx and torchscript: "
                                             "one file with a dynamic batch axis, checked against PyTorch.")
    export.add_argument("run_dir", type=Path, metavar="RUN_OR_BUNDLE")
    export.add_argument("--format", default="bundle", choices=("bundle", "onnx", "torchscript"), help="[bundle]")
    export.add_argument("--out", type=Path, metavar="PATH",
                        help="where to write [RUN_DIR/export/bundle, model.onnx or model.pt]")
    export.add_argument("--data-dir", type=Path, metavar="DIR", help=DATA_DIR_HELP)

    serve = commands.add_parser("serve", help="serve a model over HTTP, with a drawing page at /",
                                description="FastAPI under uvicorn: POST /predict, POST /predict/batch, GET /health, "
                                            "GET /model, OpenAPI docs at /docs, and a page to draw digits on at /.")
    serve.add_argument("source", metavar="RUN_OR_BUNDLE")
    serve.add_argument("--host", default="127.0.0.1", help="[127.0.0.1]")
    serve.add_argument("--port", type=int, default=8000, help="[8000]")
    serve.add_argument("--engine", default="torch", choices=("torch", "onnx"), help="inference engine [torch]")
    serve.add_argument("--max-upload-mb", type=float, default=4.0, metavar="MB", help="largest request body [4]")

    commands.add_parser("models", help="list the models with their parameter counts on MNIST")
    commands.add_parser("presets", help="list the presets: what each reproduces and its documented result")
    commands.add_parser("datasets", help="list the datasets")
    return parser


def _add_train_options(parser: argparse.ArgumentParser,
                       skip: frozenset[str] = frozenset()) -> dict[str, argparse._ArgumentGroup]:
    """One flag per TrainConfig field, from its declaration (type, choices, help, group); fields without a
    group are internal. None means "not given", so presets and saved configs are not overridden."""
    groups = {name: parser.add_argument_group(f"{name} options") for name in GROUPS}
    for field in dataclasses.fields(TrainConfig):
        group = field.metadata["group"]
        if group is None or field.name in skip:
            continue
        default = getattr(DEFAULTS, field.name)
        text = field.metadata["help"]
        if isinstance(default, bool):
            groups[group].add_argument("--" + flag(field.name), action="store_true", default=None, help=text)
            continue
        if field.name in CHOICES:
            # Checked by TrainConfig.validate, whose message lists the choices; argparse's choices= would exit
            # from inside parse_args instead. The completer offers them to the shell.
            choices = CHOICES[field.name]
            action = groups[group].add_argument("--" + flag(field.name), default=None,
                                                metavar="{" + ",".join(choices) + "}", help=f"{text} [{default}]")
            action.completer = _choices_completer(choices)  # type: ignore[attr-defined]
            continue
        # Annotations are strings here ("int | None"): the first type named is the flag's type.
        kind = {"int": int, "float": float}.get(str(field.type).split(" |")[0], str)
        shown = f" [{default}]" if default is not None else ""
        metavar = field.metadata.get("metavar", {float: "X", int: "N", str: "NAME"}[kind])
        action = groups[group].add_argument("--" + flag(field.name), type=kind, default=None, metavar=metavar,
                                            help=text + shown)
        if field.name in NAME_COMPLETERS:
            action.completer = NAME_COMPLETERS[field.name]  # type: ignore[attr-defined]
    return groups


def _choices_completer(choices: Sequence[str]) -> Callable[..., list[str]]:
    return lambda **_: list(choices)


def _complete_models(**_: object) -> list[str]:
    from seqvision.models import model_names

    return model_names()


def _complete_datasets(**_: object) -> list[str]:
    from seqvision.data import dataset_names

    return dataset_names()


# Model and dataset names live in registries that import torch: looked up only when completion asks.
NAME_COMPLETERS = {"model": _complete_models, "dataset": _complete_datasets}


def _add_shared_train_options(parser: argparse.ArgumentParser, skip: frozenset[str]) -> None:
    """The train options that compare and cv pass to every run they train."""
    groups = _add_train_options(parser, skip)
    groups["run"].add_argument("--config", metavar="FILE|PRESET", help="start from a config file or a preset")
    groups["run"].add_argument("--no-progress", action="store_true", help="print nothing while training")


def _add_tune_parser(commands: argparse._SubParsersAction) -> None:
    """`seqvision tune`: its own options, the train options (given ones are held fixed), the search space."""
    from seqvision.experiments.search_space import space_help

    tune = commands.add_parser(
        "tune", help="search hyper-parameters with Optuna; several processes can share one study",
        description="Train one run per trial into OUT/trials/<number>/, scored by its lowest validation loss, "
                    "and prune trials worse than the median. Writes OUT/best.yaml (for seqvision train --config) "
                    "and OUT/study.html. Train options given here are held fixed; the others in the search "
                    "space below are searched. Run the same command again, or on other machines with the same "
                    "--storage, to continue or share the study.",
        epilog="search space (architecture rows only for models that take the option):\n" + space_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="the study's total of answered (complete or pruned) trials, over all its processes; "
                           "failed trials are made up for")
    tune.add_argument("--storage", metavar="URL",
                      help="Optuna database shared by the study's processes: sqlite:///PATH.db or "
                           "postgresql://USER@HOST/DB [sqlite in OUT/study.db]")
    tune.add_argument("--study-name", metavar="NAME", help="study to create or join [MODEL-DATASET]")
    tune.add_argument("--out", type=Path, metavar="DIR", help="output folder [runs/tune-MODEL-DATASET]")
    # A trial is one process's run: several processes share a study through --storage, not through DDP.
    _add_shared_train_options(tune, skip=frozenset({"devices", "num_nodes", "strategy", "dist_timeout"}))


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    return {name: value for name, value in vars(args).items() if name in names and value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _offer_completion(parser)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except TrainingInterruptedError as interrupted:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted before training started; nothing to resume.", file=sys.stderr)
        return 130
    except SeqvisionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """seqvision's own warnings as one line, like its errors; other libraries' in Python's usual form."""
    if issubclass(category, SeqvisionWarning):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _offer_completion(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (argcomplete sets _ARGCOMPLETE) and exit; otherwise do nothing."""
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)


def run_train(args: argparse.Namespace) -> int:
    from seqvision.config import load_preset
    from seqvision.evaluation.evaluate import format_metrics
    from seqvision.experiments.train_test import train

    overrides = _overrides(args)
    config = load_preset(args.config) if args.config else None
    result = train(config, out=args.out, resume=args.resume, progress=not args.no_progress,
                   report=not args.no_report, **overrides)
    if not result.tested:  # another process of a distributed run: process 0 reports
        return 0
    print(format_metrics(result.test_metrics))
    written = "history.csv, curves.png, summary.txt, test_metrics.json, checkpoints/"
    if not args.no_report:
        written = "report.html, report.md, metrics.json, plots/, " + written
    print(f"run folder: {result.run_dir}  ({written})")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from seqvision.evaluation.evaluate import format_metrics
    from seqvision.evaluation.report import write_report

    files = write_report(args.run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir, image_index=args.image)
    print(format_metrics(files.metrics))
    print(f"macro F1 {files.metrics['macro_f1']:.4f}  macro AUC {files.metrics['macro_auc']:.5f}  "
          f"ECE {files.metrics['ece']:.4f}")
    print(f"report: {files.html}  summary: {files.markdown}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from seqvision.evaluation.evaluate import evaluate, format_metrics, recorded_metrics

    metrics = evaluate(args.run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir)
    print(format_metrics(metrics))
    recorded = recorded_metrics(args.run_dir)
    if recorded and recorded.get("checkpoint") == metrics["checkpoint"]:
        same = all(recorded[key] == metrics[key] for key in ("test_loss", "test_accuracy", "test_samples"))
        print("identical to the metrics recorded at the end of training" if same
              else f"differs from the metrics recorded at the end of training: {recorded}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from seqvision.config import load_preset
    from seqvision.experiments.compare import compare

    config = load_preset(args.config) if args.config else None
    result = compare(args.models, run_dirs=args.runs, seeds=args.seeds, out=args.out, config=config,
                     progress=not args.no_progress, **_overrides(args))
    print(result.markdown.read_text(), end="")
    print(f"written: {result.markdown}, {result.csv}, {result.plot}")
    return 0


def run_cv(args: argparse.Namespace) -> int:
    from seqvision.config import load_preset
    from seqvision.experiments.cv import cross_validate

    config = load_preset(args.config) if args.config else None
    result = cross_validate(config, folds=args.folds, out=args.out, progress=not args.no_progress,
                            **_overrides(args))
    print(result.summary.read_text(), end="")
    print(f"written: {result.summary} (and cv.json, cv.csv, fold*/ beside it)")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from seqvision.config import load_preset
    from seqvision.experiments.tune import tune

    config = load_preset(args.config) if args.config else None
    result = tune(config, trials=args.trials, out=args.out, storage=args.storage, study_name=args.study_name,
                  progress=not args.no_progress, **_overrides(args))
    counts = ", ".join(f"{count} {state}" for state, count in result.counts.items() if count)
    print(f"study {result.study_name} in {result.storage}: {counts}; this process ran {len(result.trials_run)}")
    params = "  ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                       for name, value in result.best_params.items())
    print(f"best: trial {result.best_trial}, validation loss {result.best_value:.4f}  {params}")
    print(f"written: {result.best_config} (seqvision train --config {result.best_config}), {result.page}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from seqvision.models import build_model, get_model_entry, model_names

    print(f"{'model':<14}{'parameters (MNIST)':>20}  description")
    for name in model_names():
        model = build_model(TrainConfig(model=name), (28, 28), 10)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:<14}{count:>20,}  {get_model_entry(name).description}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import time

    from seqvision.serving.predict import Predictor, image_files, predict_files, render_results

    names = image_files(args.inputs)
    predictor = Predictor.open(args.source, engine=args.engine)
    started = time.perf_counter()
    progress = None
    if len(names) > PROGRESS_FROM and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(names), unit="image", file=sys.stderr)
    results = predict_files(predictor, names, preprocess=not args.no_preprocess, progress=progress)
    if progress is not None:
        progress.close()
    elapsed = time.perf_counter() - started
    print(render_results(results, args.format, max(1, min(args.top_k, len(predictor.classes)))), end="")
    failed = sum(r.prediction is None for r in results)
    print(f"{len(results)} pictures in {elapsed:.2f} s ({len(results) / elapsed:,.0f} images/s), "
          f"{failed} without an answer", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from seqvision.serving.export import export

    written, difference, images = export(args.run_dir, args.format, out=args.out, data_dir=args.data_dir)
    print(f"written: {written}")
    if difference is not None:
        print(f"largest absolute difference from PyTorch, batches of 1, 7 and 256 of {images}: {difference:.2e}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from seqvision.serving.app import serve
    from seqvision.serving.predict import Predictor

    predictor = Predictor.open(args.source, engine=args.engine)
    serve(predictor, args.host, args.port, max_upload_bytes=int(args.max_upload_mb * 2**20))
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from seqvision.config import presets

    for preset in presets().values():
        print(f"{preset.name}\n  reproduces: {preset.reproduces}\n  result:     {preset.result}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from seqvision.data import dataset_names, get_dataset

    print(f"{'dataset':<16}{'images':>8}{'classes':>9}  description")
    for name in dataset_names():
        spec = get_dataset(name)
        print(f"{name:<16}{'x'.join(map(str, spec.image_shape)):>8}{spec.num_classes:>9}  {spec.description}")
    print(f"{'folder:PATH':<16}{'NxN':>8}{'folders':>9}  your own pictures, one sub-folder of PATH per class "
          "(--image-size N, --colour grey|rgb)")
    return 0


COMMANDS = {"train": run_train, "eval": run_eval, "report": run_report, "compare": run_compare, "cv": run_cv,
            "tune": run_tune, "predict": run_predict, "export": run_export, "serve": run_serve, "models": run_models,
            "presets": run_presets, "datasets": run_datasets}
