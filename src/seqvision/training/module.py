"""The LightningModule: the whole training step on one screen."""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from seqvision.config import TrainConfig
from seqvision.errors import TrainingDivergedError
from seqvision.runs.checkpoint import SECTION, capture_random_state, restore_random_state
from seqvision.training.callbacks import follow_moved_run_folder
from seqvision.training.datamodule import BATCHES_PER_GROUP, BatchGroup
from seqvision.training.optim import build_optimizer, build_plateau_scheduler, step_schedule


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of any registered model on batches of (images, labels)."""

    def __init__(self, model: nn.Module, config: TrainConfig, description: dict[str, Any]) -> None:
        super().__init__()
        # The step is written out (training_step), so that Lightning's loop can hand it a group of batches.
        self.automatic_optimization = False
        self.model = model
        self.config = config
        # The checkpoint's "seqvision" section (seqvision.runs.checkpoint): one .ckpt file rebuilds its model.
        self.description = description
        self.schedule = None
        # The validation pass's loss sum and correct predictions, on this process's shard.
        self.validation_totals = [0.0, 0]
        # --ema-decay: a frozen copy that follows the trained weights, saved beside them (runs.checkpoint reads it
        # as the run's model). Frozen, so neither the optimiser nor DDP's gradient averaging sees it.
        self.averaged = copy.deepcopy(model).requires_grad_(False) if config.ema_decay else None
        self.lightning_step_hooks = True  # decided in on_train_start: _step_hooks_in_use

    @property
    def evaluated_model(self) -> nn.Module:
        """What validation, checkpoint selection and every later use of the run see: the average when kept."""
        return self.averaged if self.averaged is not None else self.model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.evaluated_model(images)

    def training_step(self, group: BatchGroup, group_idx: int) -> dict[str, Any]:
        """One optimiser step per batch of the group (training/datamodule.py: BatchGroups)."""
        optimizer = self.optimizers()
        loss_sums, correct, count = [], 0, 0
        for number, (images, labels) in enumerate(group.batches, start=group.first):
            logits = self.model(images)
            loss = self.training_loss(logits, labels)
            value = loss.item()
            if not math.isfinite(value):
                # Raised before backward, so no optimiser step sees it and the last checkpoint stays good.
                raise TrainingDivergedError(
                    f"the training loss became {value} at epoch {self.current_epoch + 1}, batch {number + 1}. "
                    "Lower --lr, set --clip-grad (e.g. 1.0), or use --scheduler onecycle to warm up."
                )
            optimizer.zero_grad()
            # Lightning runs all of training_step under the precision's autocast (without its cache of cast weights,
            # so each step casts the weights the step before updated); only the forward pass belongs there.
            with torch.autocast(self.device.type, enabled=False):
                share = self._share_of_global_batch(number, len(labels))
                self._backward(loss if share == 1.0 else loss * share)
                if self.config.clip_grad:
                    # torch's own: Lightning's clip_gradients refuses a fused optimiser under any autocast, for
                    # fp16's loss scaler, which bf16 autocast does not have.
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
                self._optimizer_step(optimizer)
            if self.averaged is not None:
                self._update_average()
            self._apply_schedule()
            loss_sums.append(value * len(labels))
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
        if self.trainer.progress_bar_callback is not None:
            # Only the progress bar shows it (history.csv has the epoch's own totals).
            self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(labels))
        return {"loss_sums": loss_sums, "correct": correct, "count": count}

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning names the hook it is in before and after each of the twenty-odd hooks of a training step;
        # nn.Module's __setattr__ looks the name up among parameters, buffers and submodules every time, and the
        # name is never one of those (docs/benchmarks.md: framework overhead).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _share_of_global_batch(self, number: int, size: int) -> float:
        """This process's weight in DDP's average of the processes' gradients that makes it the gradient of the
        global batch's mean loss, as one process computes it, also when a batch does not split evenly."""
        world_size = self.trainer.world_size
        if world_size == 1:
            return 1.0
        return size * world_size / self.trainer.train_dataloader.batches.global_batch_size(number)

    def on_validation_epoch_start(self) -> None:
        self.validation_totals = [0.0, 0]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.evaluated_model(images)
        # Summed here and logged once at the epoch's end, not per batch: each call of Lightning's log walks its
        # values and updates its running metrics in Python (docs/benchmarks.md: framework overhead).
        self.validation_totals[0] += F.cross_entropy(logits, labels, reduction="sum").item()
        self.validation_totals[1] += int((logits.argmax(dim=1) == labels).sum())

    def on_validation_epoch_end(self) -> None:
        # Each process validated its shard of the split: its sums over the whole split's size are its shares of
        # the split's means, which Lightning adds up over the processes (on one process, they are the means).
        images = len(self.trainer.val_dataloaders.labels)
        loss_sum, correct = self.validation_totals
        self.log_dict({"val_loss": loss_sum / images, "val_acc": correct / images}, prog_bar=True, sync_dist=True,
                      reduce_fx="sum")

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.config, self.model.parameters())
        plateau = build_plateau_scheduler(self.config, optimizer)
        return {"optimizer": optimizer, "lr_scheduler": plateau} if plateau else optimizer

    def on_train_start(self) -> None:
        # Planned here, not in configure_optimizers: asking for the step count there makes Lightning set up the
        # training batches before it restores their position from a checkpoint, and a resumed epoch would
        # start again from its first batch.
        steps = len(self.trainer.train_dataloader.batches) * self.trainer.max_epochs
        self.schedule = step_schedule(self.config, steps)
        self._apply_schedule()
        self.lightning_step_hooks = _step_hooks_in_use(self.trainer, self)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.lightning_step_hooks:
            self.manual_backward(loss)
        else:
            loss.backward()

    def _optimizer_step(self, optimizer: Any) -> None:
        if self.lightning_step_hooks:
            optimizer.step()
            return
        # What Lightning's manual optimisation does around the step, without the hooks: count it, so that the
        # global step, the checkpoints and a resumed run see it as they see any other.
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        optimizer.optimizer.step()
        progress.increment_completed()

    def on_train_epoch_start(self) -> None:
        self.trainer.train_dataloader.batches.set_epoch(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, group: BatchGroup, group_idx: int) -> None:
        # Counted after the optimiser steps, so a checkpoint never skips a batch it did not learn from.
        self.trainer.train_dataloader.batches.batches_done = group.end

    def on_train_epoch_end(self) -> None:
        # Lightning steps no scheduler under manual optimisation. Here, after history.csv took the epoch's rate
        # and before ModelCheckpoint saves the epoch, so that last.ckpt holds the scheduler as it leaves the epoch.
        plateau = self.lr_schedulers()
        if plateau is not None:
            plateau.step(float(self.trainer.callback_metrics["val_loss"]))

    @torch.no_grad()
    def _update_average(self) -> None:
        """One step of the moving average, from the global step alone so that a resumed run makes the same ones.

        The decay ramps up as (1 + step) / (10 + step) to its set value, so that the randomly initialised weights
        are forgotten within the first steps instead of weighing on the average for thousands of them."""
        step = self.trainer.global_step
        weight = 1.0 - min(self.config.ema_decay, (1 + step) / (10 + step))
        for average, current in zip(self.averaged.state_dict().values(), self.model.state_dict().values(),
                                    strict=True):
            if average.is_floating_point():
                average.lerp_(current, weight)
            else:  # counters such as BatchNorm's num_batches_tracked
                average.copy_(current)

    def _apply_schedule(self) -> None:
        """Set the rate of the step about to be taken from the global step alone (see seqvision.training.optim)."""
        if self.schedule is not None:
            self.schedule.apply(self.trainer.optimizers[0], self.trainer.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[SECTION] = {**self.description, "random_state": capture_random_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _count_in_groups(checkpoint["loops"]["fit_loop"])
        for callback in self.trainer.checkpoint_callbacks:
            follow_moved_run_folder(checkpoint, callback)
        # Restored as the last thing before training continues, so the next dropout mask is the one it would
        # have drawn had the run never stopped.
        if "random_state" in checkpoint[SECTION]:
            restore_random_state(checkpoint[SECTION]["random_state"])


def _count_in_groups(fit_loop: dict[str, Any]) -> None:
    """Rewrite, in place, the loop state of a checkpoint saved before training handed Lightning its batches in groups
    (seqvision 0.1.0 until ade54e6), so that the run resumes where it stopped.

    Such a checkpoint counts its optimiser steps under automatic optimisation, where the manual loop now counts
    them (the global step, which the schedules and the moving average follow), and its batches one by one, where
    Lightning now counts groups: an epoch that was saved finished must still read as finished (its batches in
    whole groups, rounded up), an epoch interrupted halfway as unfinished (rounded down; the batches themselves
    resume from their own count, `batches_done`)."""
    automatic = fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]
    manual = fit_loop["epoch_loop.manual_optimization.optim_step_progress"]
    if manual["total"]["completed"] or not automatic["total"]["completed"]:
        return
    fit_loop["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(automatic)
    epoch = fit_loop["epoch_progress"]["current"]
    finished = epoch["processed"] > epoch["completed"]
    batches = fit_loop["epoch_loop.batch_progress"]
    for scope in ("total", "current"):
        for key, count in batches[scope].items():
            batches[scope][key] = math.ceil(count / BATCHES_PER_GROUP) if finished else count // BATCHES_PER_GROUP


STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _step_hooks_in_use(trainer: L.Trainer, module: L.LightningModule) -> bool:
    """Whether each step must go through Lightning's manual_backward and optimizer step, whose hooks, run for every
    callback and the module around every backward pass and optimiser step, took about a third of the framework's
    cost of a step (docs/benchmarks.md: framework overhead). They are needed when a callback or the module
    overrides one of those hooks or the module's backward, or where the strategy (DDP's gradient averaging) or the
    precision (fp16's loss scaler) adds work of its own there; a default run on one device has none of these."""
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy

    plugin = trainer.precision_plugin
    if type(trainer.strategy) is not SingleDeviceStrategy or type(plugin) not in (Precision, MixedPrecision):
        return True
    if getattr(plugin, "scaler", None) is not None or type(module).backward is not L.LightningModule.backward:
        return True
    overrides = [(module, L.LightningModule)] + [(callback, L.Callback) for callback in trainer.callbacks]
    return any(getattr(type(hooked), name) is not getattr(base, name)
               for hooked, base in overrides for name in STEP_HOOKS)
