"""`seqvision tune`: a hyper-parameter search with Optuna, one normal training run per trial.

A study lives in an Optuna RDB storage: a SQLite file (OUT/study.db unless --storage says otherwise) or a
PostgreSQL database that processes on several machines share. Every process runs trials until the study
holds `trials` answered ones (complete or pruned, counting those other processes are running); failed trials
do not count, so a crash or an interruption is made up for by a later trial. Each trial trains
`seqvision.training.train.train_model` into OUT/trials/<number>/ with options drawn from the search space
(seqvision.experiments.search_space) and is scored by the lowest validation loss of its epochs: the
checkpoint `seqvision train` keeps. The test set is never looked at. A median pruner stops trials whose
validation loss after an epoch is worse than the median of earlier trials at that epoch. A process gives up
after FAILURES_IN_A_ROW failed trials in a row (a broken dataset fails every trial).

A trial that raises (a crash, out of memory, a diverged loss) is recorded as FAIL with a one-line reason in
its user attribute `failure`, and the study goes on. A trial left RUNNING by a process that died is failed
by the next process to start a trial: at once when that process ran on this machine (its pid is recorded
and no longer alive), otherwise once its Optuna heartbeat is older than the grace period.

OUT/best.yaml is the best trial's configuration (`seqvision train --config OUT/best.yaml`) and
OUT/study.html a self-contained page: optimisation history, parameter importances, validation curves and
the table of trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from seqvision.atomic import write_text_atomic
from seqvision.config import TrainConfig
from seqvision.data import get_dataset, load_dataset
from seqvision.errors import ConfigError, StudyStorageError, TrainingInterruptedError
from seqvision.experiments.search_space import Dimension, dimensions_for
from seqvision.models import get_model_entry, resolve_model_options
from seqvision.runs.folder import RunFolder
from seqvision.training.train import train_model

# A live process records a heartbeat this often; another process fails its running trial once the
# heartbeat is this old. Generous, because a heartbeat thread shares two busy cores with training.
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 120
# The pruner judges nothing before this many trials have finished, nor a trial's first epochs (a quarter of them,
# at least one: see open_study).
PRUNER_STARTUP_TRIALS = 4
OBJECTIVE = "val_loss"
FAILURES_IN_A_ROW = 5  # a process stops after this many failed trials in a row
SQLITE_BUSY_SECONDS = 60
POSTGRES_CONNECT_SECONDS = 10
SCHEMA_RACE_ATTEMPTS = 5
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


@dataclass
class TuneResult:
    """A finished `tune`: the study, its best trial and the files written for it."""

    study_name: str
    storage: str  # the URL with any password hidden
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    page: Path
    trials_run: list[int]  # numbers of the trials this process ran
    counts: dict[str, int]  # trials of the study by state: complete, pruned, failed, running, waiting


class _TrialError(Exception):
    """A trial raised; Optuna records it as FAIL and the study goes on."""


class PruneOnValidation(L.Callback):
    """Reports each epoch's validation loss to an Optuna trial, and stops the trial when the pruner says so.

    The stop comes at the start of the next epoch, not inside validation, so that the judged epoch's row in
    history.csv and its checkpoint are written first: a pruned trial's run folder is complete up to there."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best_loss = float("inf")
        self.best_acc = float("nan")
        self.epochs = 0
        self.verdict: str | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or OBJECTIVE not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics[OBJECTIVE])
        self.epochs = trainer.current_epoch + 1
        if loss < self.best_loss:
            self.best_loss, self.best_acc = loss, float(trainer.callback_metrics.get("val_acc", float("nan")))
        self.trial.report(loss, step=trainer.current_epoch)
        if self.trial.should_prune():
            self.verdict = f"validation loss {loss:.4f} after epoch {self.epochs} is worse than the median"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.verdict is not None:
            raise optuna.TrialPruned(self.verdict)


def default_study_name(config: TrainConfig) -> str:
    return f"{config.model}-{config.dataset}"


def default_out(config: TrainConfig) -> Path:
    return Path("runs") / f"tune-{config.model}-{config.dataset}"


def tune(config: TrainConfig | None = None, *, trials: int, out: str | os.PathLike[str] | None = None,
         storage: str | None = None, study_name: str | None = None, progress: bool = True,
         **overrides: Any) -> TuneResult:
    """Search hyper-parameters until the study holds `trials` answered trials; returns its best.

    `config` is the base every trial starts from; `overrides` are TrainConfig fields, and those given are
    held fixed (`tune(model="lstm", dataset="digits", hidden=32, trials=20)` searches everything but the
    hidden size). `storage` is an Optuna RDB URL (sqlite:///study.db, postgresql://user@host/db) shared by
    every process of the study [a SQLite file in `out`]; `study_name` defaults to MODEL-DATASET.
    """
    if trials < 1:
        raise ConfigError(f"--trials must be positive, got {trials}.")
    base = resolve_model_options(dataclasses.replace(config or TrainConfig(), **overrides).validate())
    # A missing dataset is said once, here, rather than by every trial.
    load_dataset(get_dataset(base.dataset).name, base.data_dir)
    out = Path(out) if out is not None else default_out(base)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or default_study_name(base)
    database = open_storage(url)
    study = open_study(database, name, base)
    space = dimensions_for(get_model_entry(base.model).defaults, fixed=frozenset(overrides))
    objective = _Objective(base, space, out / "trials")
    report = _Progress(study, trials, enabled=progress)
    try:
        with _optuna_quiet():
            _run_trials(study, database, objective, trials, report)
    except (KeyboardInterrupt, TrainingInterruptedError):
        raise TrainingInterruptedError(f"tune interrupted; a trial in progress is recorded as failed. Run the same "
                                       f"command again to continue study {name!r}.") from None
    finally:
        report.close()
        if study.get_trials(deepcopy=False):
            write_study_page(study, out / "study.html", hide_password(url))
    return _result(study, url, out, objective.trials_run, base)


def _run_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, objective: _Objective, trials: int,
                report: _Progress) -> None:
    """One trial at a time, while the study lacks answers.

    Failed trials are made up for, but a setting that fails every time (a broken dataset, a model that cannot
    fit in memory whatever the options) must not loop forever: the process gives up after a run of failures."""
    failures_in_a_row = 0
    while failures_in_a_row < FAILURES_IN_A_ROW:
        fail_dead_trials(study, storage)  # first: a dead process's trial must not count as running
        if _answered(study) >= trials:
            break
        study.optimize(objective, n_trials=1, catch=(_TrialError,))
        finished = study.get_trials(deepcopy=False)[objective.trials_run[-1]]
        failures_in_a_row = failures_in_a_row + 1 if finished.state == TrialState.FAIL else 0
        report.finished(finished)


def _answered(study: optuna.Study) -> int:
    """Trials that count towards the total: complete, pruned, or running (perhaps in another process)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                        TrialState.RUNNING)))


class _Objective:
    """One trial: draw the options, train a run folder, score it by its lowest validation loss."""

    def __init__(self, base: TrainConfig, space: list[Dimension], trials_dir: Path) -> None:
        self.base = base
        self.space = space
        self.model_defaults = get_model_entry(base.model).defaults
        self.trials_dir = trials_dir
        self.trials_run: list[int] = []

    def __call__(self, trial: optuna.Trial) -> float:
        self.trials_run.append(trial.number)
        run_dir = self.trials_dir / str(trial.number)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        pruning = PruneOnValidation(trial)
        started = time.perf_counter()
        try:
            config = dataclasses.replace(self.base, **{row.option: _suggest(trial, row, self.model_defaults)
                                                       for row in self.space})
            trial.set_user_attr("config", config.to_dict())
            train_model(config, out=run_dir, progress=False, callbacks=[pruning])
        except optuna.TrialPruned:
            _mark_run(run_dir, "pruned")
            raise
        except (KeyboardInterrupt, TrainingInterruptedError):
            trial.set_user_attr("failure", "interrupted (Ctrl-C)")
            _mark_run(run_dir, "interrupted")
            raise
        except Exception as error:  # any crash, out of memory included, is this trial's failure, not the study's
            trial.set_user_attr("failure", one_line(error))
            _mark_run(run_dir, "failed")
            raise _TrialError(one_line(error)) from error
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        trial.set_user_attr("val_acc", pruning.best_acc)
        trial.set_user_attr("epochs", pruning.epochs)
        return pruning.best_loss


def _suggest(trial: optuna.Trial, row: Dimension, model_defaults: dict[str, Any]) -> Any:
    if row.kind == "categorical":
        return trial.suggest_categorical(row.option, row.choices)
    low, high = row.bounds(model_defaults)
    if row.kind in ("log-uniform", "uniform"):
        return trial.suggest_float(row.option, low, high, log=row.kind == "log-uniform")
    return trial.suggest_int(row.option, int(low), int(high), log=row.kind == "int-log-uniform")


def _mark_run(run_dir: Path, status: str) -> None:
    """Record in run.json how the trial ended, where training got far enough to write one."""
    run = RunFolder(run_dir)
    if run.info_path.is_file():
        run.update_info(status=status)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else 'no message'}"[:300]


def hide_password(url: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study database at `url`, with heartbeats on; a URL that cannot be opened is said in one line."""
    import sqlalchemy

    shown = hide_password(url)
    if url.startswith("sqlite"):
        connect = {"timeout": SQLITE_BUSY_SECONDS}  # wait for another process's write instead of failing
        fix = "check that the file's folder exists and is writable (sqlite:///relative.db, sqlite:////absolute.db)"
    else:
        connect = {"connect_timeout": POSTGRES_CONNECT_SECONDS} if url.startswith("postgresql") else {}
        fix = ("check that the database server is running and reachable from here, and that the database and user "
               "exist (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect},
                                                  heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError) as error:
            if _lost_schema_race(error) and attempt + 1 < SCHEMA_RACE_ATTEMPTS:
                time.sleep(random.uniform(0.2, 1.0))
                continue
            reason = one_line(getattr(error, "orig", None) or error)
            raise StudyStorageError(f"cannot open the study storage {shown} ({reason}); {fix}.") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _lost_schema_race(error: Exception) -> bool:
    """Processes that open a new database at the same moment all create Optuna's tables; all but one fail
    (a duplicate version row, a table that already exists) and find the tables there when they try again."""
    import sqlalchemy

    return isinstance(error, sqlalchemy.exc.IntegrityError | sqlalchemy.exc.ProgrammingError) or (
        isinstance(error, sqlalchemy.exc.OperationalError) and "already exists" in str(error))


def open_study(storage: optuna.storages.RDBStorage, name: str, config: TrainConfig) -> optuna.Study:
    """Create the study, or join it when it exists; refuse one that tunes another model or dataset."""
    with _optuna_quiet():
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", load_if_exists=True,
            # constant_liar: trials running in other processes count as bad, so workers spread out.
            sampler=optuna.samplers.TPESampler(constant_liar=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                               n_warmup_steps=max(1, config.epochs // 4)))
    tuned = {"model": config.model, "dataset": config.dataset, "objective": OBJECTIVE}
    recorded = study.user_attrs
    for key, value in tuned.items():
        if key not in recorded:
            study.set_user_attr(key, value)
        elif recorded[key] != value:
            raise StudyStorageError(f"study {name!r} in {hide_password(storage.url)} tunes {key} "
                                    f"{recorded[key]!r}, not {value!r}; pass another --study-name.")
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise StudyStorageError(f"study {name!r} maximises its objective; tune minimises the validation loss. "
                                "Pass another --study-name.")
    return study


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Fail the RUNNING trials of processes on this machine that no longer exist (killed, crashed)."""
    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or pid is None or (_alive(pid) and pid != os.getpid()):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another process was first
            storage.set_trial_user_attr(trial_id, "failure", f"its process (pid {pid}) ended during the trial")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna logs each trial (with a traceback for failed ones); tune prints its own one line per trial."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = dict.fromkeys(STATE_NAMES.values(), 0)
    for trial in study.get_trials(deepcopy=False):
        counts[STATE_NAMES[trial.state]] += 1
    return counts


def _result(study: optuna.Study, url: str, out: Path, trials_run: list[int], base: TrainConfig) -> TuneResult:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        failures = [f"trial {t.number}: {t.user_attrs.get('failure', 'no reason recorded')}"
                    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))][:3]
        raise ConfigError(f"no trial of study {study.study_name!r} has completed ({'; '.join(failures) or 'none ran'})"
                          f"; fix the cause and run again: the study continues.")
    best = study.best_trial
    write_best_config(best, out / "best.yaml", study.study_name, base)
    return TuneResult(study.study_name, hide_password(url), best.number, float(best.value), dict(best.params),
                      out / "best.yaml", out / "study.html", trials_run, _counts(study))


def write_best_config(best: FrozenTrial, path: Path, study_name: str, base: TrainConfig) -> None:
    """The best trial's configuration as a config file for `seqvision train --config`, saying where it came from.

    Trials run by tune record their whole configuration; one added to the study otherwise (Optuna's add_trial)
    has only its parameters, laid over this process's base configuration."""
    if "config" in best.user_attrs:
        config = TrainConfig.from_dict(best.user_attrs["config"], origin=f"trial {best.number}")
    else:
        options = {field.name for field in dataclasses.fields(TrainConfig)}
        config = dataclasses.replace(base, **{name: value for name, value in best.params.items() if name in options})
    result = f"validation loss {best.value:.4f}"
    if "val_acc" in best.user_attrs:
        result += f", accuracy {100 * best.user_attrs['val_acc']:.2f}% after {best.user_attrs['epochs']} epochs"
    info = {"reproduces": f"best trial {best.number} of tune study {study_name!r}", "result": result}
    write_text_atomic(path, yaml.safe_dump({**config.to_dict(), "preset": info}, sort_keys=False))


def describe_trial(trial: FrozenTrial) -> str:
    """One line: the trial's number, outcome and options."""
    params = "  ".join(f"{name} {_format(value)}" for name, value in trial.params.items())
    if trial.state == TrialState.COMPLETE:
        outcome = f"val loss {trial.value:.4f} acc {100 * trial.user_attrs.get('val_acc', float('nan')):.2f}%"
    elif trial.state == TrialState.PRUNED:
        last = max(trial.intermediate_values, default=None)
        outcome = f"pruned after epoch {last + 1}" if last is not None else "pruned"
    else:
        outcome = f"{STATE_NAMES[trial.state]}: {trial.user_attrs.get('failure', 'no heartbeat; its process died')}"
    return f"trial {trial.number} {outcome}  {params}  {trial.user_attrs.get('seconds', 0):.1f}s"


def _format(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class _Progress:
    """A progress bar over the study's trials on a terminal; one line per finished trial otherwise."""

    def __init__(self, study: optuna.Study, total: int, *, enabled: bool) -> None:
        self.study = study
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=min(total, _answered(study)), unit="trial", file=sys.stderr,
                            desc=f"tune {study.study_name}")

    def finished(self, trial: FrozenTrial) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            print(describe_trial(trial), file=sys.stderr, flush=True)
            return
        self.bar.n = min(self.bar.total, _answered(self.study))
        with contextlib.suppress(ValueError):  # no complete trial yet
            self.bar.set_postfix(best=f"{self.study.best_value:.4f}", refresh=False)
        self.bar.write(describe_trial(trial))
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_study_page(study: optuna.Study, path: Path, storage: str) -> None:
    """One HTML page that works offline (plotly.js inlined): history, importances, curves, the trials."""
    trials = study.get_trials(deepcopy=False)
    sections = [("Optimisation history", _history_figure(trials, study)),
                ("Parameter importances", _importance_figure(trials, study)),
                ("Validation loss per epoch", _curves_figure(trials, study))]
    body = "\n".join(_section(title, figure, first=index == _first_figure(sections))
                     for index, (title, figure) in enumerate(sections))
    rows = "\n".join(_trial_row(trial) for trial in trials)
    counts = ", ".join(f"{count} {name}" for name, count in _counts(study).items() if count)
    complete = any(trial.state == TrialState.COMPLETE for trial in trials)
    best = (f"Best: trial {study.best_trial.number}, validation loss {study.best_value:.4f}." if complete
            else "No trial has completed yet.")
    write_text_atomic(path, f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>seqvision tune: {html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}.note{{color:#a40}}</style></head><body>
<h1>Study {html.escape(study.study_name)}</h1>
<p>Storage {html.escape(storage)}. Objective: the lowest validation loss of a trial's epochs (lower is better).
Trials: {counts}. {best}</p>
{body}
<h2>Trials</h2>
<table><tr><th>trial</th><th>state</th><th>validation loss</th><th>options</th><th>note</th></tr>
{rows}
</table></body></html>
""")


def _first_figure(sections: list[tuple[str, Any]]) -> int:
    return next((index for index, (_, figure) in enumerate(sections) if not isinstance(figure, str)), -1)


def _section(title: str, figure: Any, *, first: bool) -> str:
    """The figure (plotly.js inlined with the first one, so the page needs no network), or why there is none."""
    if isinstance(figure, str):
        return f"<h2>{title}</h2>\n<p class=note>{html.escape(figure)}</p>"
    return f"<h2>{title}</h2>\n" + figure.to_html(full_html=False, include_plotlyjs=first)


def _history_figure(trials: list[FrozenTrial], study: optuna.Study) -> Any:
    if not any(trial.state == TrialState.COMPLETE for trial in trials):
        return "No trial has completed yet: the history starts with the first complete trial."
    return optuna.visualization.plot_optimization_history(study, target_name="validation loss")


def _importance_figure(trials: list[FrozenTrial], study: optuna.Study) -> Any:
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return (f"Parameter importances need at least 2 complete trials; this study has {len(complete)} so far. "
                "Run more trials and the page shows them.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = optuna.visualization.plot_param_importances(study, target_name="validation loss")
    notes = {str(warning.message) for warning in caught if "importance" in str(warning.message).lower()}
    if notes:
        figure.update_layout(title=f"Parameter importances (rough: {' '.join(sorted(notes))})")
    return figure


def _curves_figure(trials: list[FrozenTrial], study: optuna.Study) -> Any:
    if not any(trial.intermediate_values for trial in trials):
        return "No trial has finished an epoch yet."
    return optuna.visualization.plot_intermediate_values(study)


def _trial_row(trial: FrozenTrial) -> str:
    value = f"{trial.value:.4f}" if trial.value is not None else ""
    params = ", ".join(f"{name}={_format(value)}" for name, value in trial.params.items())
    note = trial.user_attrs.get("failure", "") if trial.state == TrialState.FAIL else trial.user_attrs.get(
        "run_dir", "")
    cells = (trial.number, STATE_NAMES[trial.state], value, params, note)
    return "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>"
