"""The training engine: one explicit loop that notebooks, ``train.py`` and papermill all use.

``train`` reads top to bottom: check the run directory (``run_dir``: skip-if-trained, same recipe),
``build_training`` (data, model, optimizer, schedule), resume from ``last.pt``, then for every epoch
``train_epoch`` (steps, then validation), a metrics row, and a checkpoint every ``checkpoint_every``
epochs; last, the final evaluation. A run lives in a directory (``course_utils.run_dir``):

- ``config.yaml``       the resolved config
- ``environment.json``  versions, device, precision and speed choices
- ``metrics.csv``       one row per epoch
- ``last.pt``           everything needed to resume, rewritten atomically every ``checkpoint_every``
                        epochs and after the last
- ``best.pt``           the best-by-validation weights (``keep_best``), kept in memory and written
                        with each checkpoint
- ``final.json``        the final evaluation (train/val/test), or why the run stopped

With ``val_size: 0`` the run trains on the whole training set: no per-epoch validation (the
history's val columns are empty), nothing is chosen, and the final table has train and test only.

Calling ``train`` again on the same directory resumes after the last finished epoch, or
returns the finished run without training (skip-if-trained). Data parallelism lives in
``course_utils.distributed``, the progress bars and printed tables in ``course_utils.progress``;
their names are importable from here as before.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from course_utils import data as data_lib
from course_utils.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_atomically,
)
from course_utils.augment import normalize
from course_utils.config import ConfigError, TrainConfig, save_config
from course_utils.evaluate import evaluate
from course_utils.init import NORM_LAYERS
from course_utils.loader import BatchIterator
from course_utils.lookahead import Lookahead
from course_utils.models import create_model
from course_utils.muon import Muon
from course_utils.repro import (
    autocast,
    environment_fingerprint,
    resolve_device,
    resolve_channels_last,
    resolve_precision,
    seed_everything,
    set_deterministic,
)
from course_utils.distributed import (  # noqa: F401  (DistInfo, weights_digest: re-exported)
    DistInfo,
    all_reduce_sum,
    average_buffers,
    barrier,
    gather_digests,
    init_distributed,
    weights_digest,
)
from course_utils.progress import (  # noqa: F401  (re-exported: lessons and tests import them from engine)
    PROGRESS_ENV,
    format_epoch,
    format_final,
    progress_bar,
    progress_style,
    text_bar,
)
from course_utils.run_dir import (  # noqa: F401  (re-exported: lessons and tests import them from engine)
    METRIC_COLUMNS,
    RUNTIME_KEYS,
    Run,
    check_same_recipe,
    existing_drops_last,
    load_run,
    read_metrics,
    shown_path,
    write_json,
    write_metrics,
)
from course_utils.run_files import RunDirError, existing_run_message
from course_utils.run_lock import one_run_per_directory
from course_utils.schedule import config_schedule

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENTS_DIR = REPO_ROOT / "experiments"
WHITENING_IMAGES = 5000  # training images that set a whitening conv (airbench's number): seconds, not minutes
EVAL_BATCH_SIZE = 512  # evaluation batches when the config names none (eval_batch_size: null)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class DataBundle:
    """The three splits of a run as batch iterators, plus what describes them."""

    train: BatchIterator
    val: BatchIterator | None  # None with val_size 0: no validation split
    test: BatchIterator
    train_eval: BatchIterator  # the training split without augmentation, for the final table
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_labels: np.ndarray
    data_source: Path


@functools.lru_cache(maxsize=2)
def load_dataset_cached(name: str, data_dir: str | None):
    # Decompressing the 170 MB cache takes seconds: short runs in one process share it.
    return data_lib.load_dataset(data_lib.SPECS[name], data_dir)


def select_train_val(config: TrainConfig, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the official training set) of the run's train and validation images."""
    train_idx, val_idx = data_lib.split_train_val(len(labels), config.val_size, seed=config.split_seed)
    if config.imbalance_ratio is not None:
        train_idx = train_idx[data_lib.long_tailed_subset(labels[train_idx], config.imbalance_ratio, seed=config.split_seed)]
    if config.train_per_class is not None:
        train_idx = train_idx[data_lib.stratified_subset(labels[train_idx], config.train_per_class, seed=config.split_seed)]
    if config.val_per_class is not None:
        val_idx = val_idx[data_lib.stratified_subset(labels[val_idx], config.val_per_class, seed=config.split_seed)]
    return train_idx, val_idx


def drops_last(config: TrainConfig) -> bool:
    """Whether training epochs leave out their last, smaller batch: ``drop_last`` alone. A compiled
    model keeps every batch: the tail gets its own compiled graph (``compile_model``)."""
    return config.drop_last


def build_data(config: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> DataBundle:
    """Load the dataset, split it, compute normalization on the train split, make the iterators."""
    dataset = load_dataset_cached(config.dataset, config.data_dir)
    train_idx, val_idx = select_train_val(config, dataset.y_train)
    mean, std = data_lib.channel_stats(dataset.x_train[train_idx])
    per_rank_batch = max(config.batch_size // world_size, 1)
    channels_last = resolve_channels_last(device, config.memory_format, config.width)
    common = dict(mean=mean, std=std, device=device, channels_last=channels_last, seed=config.seed)
    eval_batch = config.eval_batch_size or EVAL_BATCH_SIZE

    def split(images, labels, **kwargs):
        return BatchIterator(images, labels, **{**common, **kwargs})

    x_train, y_train = dataset.x_train[train_idx], dataset.y_train[train_idx]
    test_idx = (np.arange(len(dataset.y_test)) if config.test_per_class is None
                else data_lib.stratified_subset(dataset.y_test, config.test_per_class, seed=config.split_seed))
    return DataBundle(
        train=split(x_train, y_train, batch_size=per_rank_batch, train=True, augment=config.augment,
                    padding=config.crop_padding, pad_mode=config.pad_mode, flip_mode=config.flip_mode,
                    rank=rank, world_size=world_size, drop_last=drops_last(config)),
        train_eval=split(x_train, y_train, batch_size=eval_batch, train=False),
        val=(split(dataset.x_train[val_idx], dataset.y_train[val_idx], batch_size=eval_batch, train=False)
             if len(val_idx) else None),
        test=split(dataset.x_test[test_idx], dataset.y_test[test_idx], batch_size=eval_batch, train=False),
        classes=dataset.classes,
        mean=mean,
        std=std,
        train_labels=y_train,
        data_source=dataset.source,
    )


# --------------------------------------------------------------------------- model and optimizer


def build_model(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    return create_model(config.model, num_classes=num_classes, norm=config.norm, width=config.width,
                        init=config.init, zero_init_residual=config.zero_init_residual)


def parameter_groups(config: TrainConfig, model: torch.nn.Module) -> list[dict]:
    """The optimizer's groups: everything trainable, with norm-layer biases in a second group
    when ``norm_bias_lr_scale != 1``.

    That group's lr is ``lr * scale`` and its weight decay ``weight_decay / scale``, so the decay
    per step (lr x weight decay) is unchanged: only the gradient step grows (airbench's 64x
    BatchNorm-bias lr). Parameters frozen at build time (``requires_grad=False``) are left out.
    """
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, NORM_LAYERS) and m.bias is not None}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if config.norm_bias_lr_scale == 1.0:
        return [{"params": [p for _, p in trainable]}]
    scale = config.norm_bias_lr_scale
    return [
        {"params": [p for _, p in trainable if id(p) not in norm_biases]},
        {"params": [p for _, p in trainable if id(p) in norm_biases], "lr": config.lr * scale,
         "weight_decay": config.weight_decay / scale},
    ]


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD, AdamW or Muon (``muon_groups``) over ``parameter_groups``; SGD and AdamW fused (one kernel
    for all parameters) on a GPU."""
    groups = parameter_groups(config, model)
    fused = uses_fused_optimizer(next(model.parameters()).device)
    if config.optimizer == "muon":
        return Muon(muon_groups(config, groups), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay, orthogonalize=False)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay, fused=fused)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999),
                             weight_decay=config.weight_decay, fused=fused)


def muon_groups(config: TrainConfig, groups: list[dict]) -> list[dict]:
    """``groups`` with the convolution filters (4-D) moved into one Muon group, as airbench94_muon:
    orthogonalized steps at ``muon_lr`` with Nesterov momentum ``muon_momentum``; the rest keep SGD."""
    filters = [p for group in groups for p in group["params"] if p.ndim == 4]
    rest = [{**group, "params": [p for p in group["params"] if p.ndim != 4]} for group in groups]
    return [{"params": filters, "lr": config.muon_lr, "momentum": config.muon_momentum, "nesterov": True,
             "orthogonalize": True}] + [group for group in rest if group["params"]]


def uses_fused_optimizer(device) -> bool | None:
    """``True`` on CUDA: the fused optimizer step is one kernel launch instead of one per tensor
    group. ``None`` elsewhere: PyTorch's default (foreach), so CPU runs keep their exact arithmetic."""
    return True if torch.device(device).type == "cuda" else None


def _match_fused(optimizer: torch.optim.Optimizer, device) -> None:
    """A loaded optimizer state carries the saving device's choice; resuming on another device
    (``device`` is a runtime key) must use this device's."""
    for group in optimizer.param_groups:
        group["fused"] = uses_fused_optimizer(device)


def build_lookahead(config: TrainConfig, total_steps: int) -> Lookahead | None:
    """The config's EMA lookahead over ``total_steps`` optimizer steps, or None (``lookahead_every: 0``)."""
    if not config.lookahead_every:
        return None
    return Lookahead(config.lookahead_every, config.lookahead_start_epoch, total_steps, sync=config.lookahead_sync)


def fit_data_dependent_init(config: TrainConfig, model: torch.nn.Module, bundle: DataBundle) -> None:
    """Models with a whitening layer fit it to the first training-split images (normalized like
    every batch; never validation or test images), or, with ``whitening: false``, train it as an
    ordinary conv from its init (the ablation of lesson 12)."""
    if not hasattr(model, "fit_whitening"):
        return
    if config.whitening:
        images = bundle.train.images[:WHITENING_IMAGES].to(bundle.train.device)
        model.fit_whitening(normalize(images, bundle.mean, bundle.std))
    else:
        model.whiten.weight.requires_grad_(True)


def class_weights(config: TrainConfig, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """``balanced``: weight ``n / (C * n_c)`` per class, so every class adds equally to the loss."""
    if config.class_weighting == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


# --------------------------------------------------------------------------- training


def train_step(model, x, y, criterion, optimizer, scaler, scheduler, precision: str):
    """One optimizer step: forward under autocast, backward (scaled for fp16), step, next lr.

    Returns the batch loss (detached) and the number of correct predictions as tensors on
    the device, without synchronizing: the caller decides when to read them.
    """
    with autocast(x.device, precision):
        out = model(x)
        loss = criterion(out, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach(), (out.argmax(1) == y).sum()


def default_run_dir(config: TrainConfig) -> Path:
    return DEFAULT_EXPERIMENTS_DIR / f"{config.model}-{config.dataset}-seed{config.seed}"


@dataclasses.dataclass
class Training:
    """What a run trains with, built from its config by ``build_training``."""

    device: torch.device
    precision: str
    channels_last: bool
    bundle: DataBundle
    model: torch.nn.Module  # the weights; checkpoints, lookahead and evaluation use it
    trainable: torch.nn.Module  # the model as stepped: wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    lookahead: Lookahead | None
    criterion: torch.nn.Module
    steps_per_epoch: int
    total_steps: int


def build_training(config: TrainConfig, dist_info: DistInfo, data: DataBundle | None = None) -> Training:
    """Device, precision, data, model (data-dependent init fitted), optimizer, schedule, lookahead, loss."""
    device = resolve_device(config.device)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    precision = resolve_precision(device, config.precision)
    channels_last = resolve_channels_last(device, config.memory_format, config.width)
    set_deterministic(config.deterministic, device)
    seed_everything(config.seed)

    bundle = data if data is not None else build_data(config, device, dist_info.rank, dist_info.world_size)
    num_classes = len(bundle.classes)
    model = build_model(config, num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist_info.enabled and config.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    fit_data_dependent_init(config, model, bundle)
    optimizer = build_optimizer(config, model)
    steps_per_epoch = len(bundle.train)
    total_steps = run_steps(config, steps_per_epoch, len(bundle.train_labels))
    scheduler = config_schedule(optimizer, config, steps_per_epoch, total_steps)
    lookahead = build_lookahead(config, total_steps)
    if lookahead is not None:
        lookahead.begin(model)
    weights = class_weights(config, bundle.train_labels, num_classes)
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device), label_smoothing=config.label_smoothing)
    trainable = model
    if dist_info.enabled:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        trainable = compile_model(trainable)
    return Training(device, precision, channels_last, bundle, model, trainable, optimizer, scheduler,
                    torch.amp.GradScaler(device.type, enabled=precision == "fp16"), lookahead, criterion,
                    steps_per_epoch, total_steps)


def restore_checkpoint(t: Training, path: Path) -> tuple[int, list[dict], dict]:
    """Load ``last.pt`` into the training state; returns (epochs done, metrics, best-epoch record)."""
    state = load_checkpoint(path, map_location=t.device)
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    _match_fused(t.optimizer, t.device)
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    if t.lookahead is not None:
        t.lookahead.load_state_dict(state["lookahead"])
    return state["epoch"], list(state["metrics"]), dict(state["best"])


def save_checkpoint(t: Training, config: TrainConfig, epochs_done: int, metrics: list[dict], best: dict,
                    path: Path) -> None:
    """Everything needed to resume after ``epochs_done`` epochs, written atomically to ``path``."""
    save_atomically(
        {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
         "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(), "epoch": epochs_done,
         "rng": capture_rng_state(), "config": config.to_dict(), "metrics": metrics, "best": best,
         "lookahead": None if t.lookahead is None else t.lookahead.state_dict()},
        path)


def write_run_start(t: Training, config: TrainConfig, run_dir: Path, metrics: list[dict], dist_info: DistInfo) -> None:
    """config.yaml, environment.json, and metrics.csv cut back to the checkpoint's rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    environment = environment_fingerprint(t.device)
    environment.update(precision=t.precision, channels_last=t.channels_last, compile=config.compile,
                       deterministic=config.deterministic, world_size=dist_info.world_size,
                       data_source=str(t.bundle.data_source.name), steps_per_epoch=t.steps_per_epoch,
                       drop_last=drops_last(config), total_steps=t.total_steps)
    write_json(run_dir / "environment.json", environment)
    write_metrics(run_dir / "metrics.csv", metrics)  # drops rows written after the checkpoint


def describe_training(t: Training, config: TrainConfig, dist_info: DistInfo) -> str:
    return (f"device {t.device} ({environment_fingerprint(t.device)['device_name']}), precision {t.precision}, "
            f"channels_last {t.channels_last}, compile {config.compile}, "
            f"world size {dist_info.world_size}, {t.steps_per_epoch} steps/epoch"
            + (" (last batch dropped)" if drops_last(config) else "")
            + (f", {t.total_steps} steps in all" if t.total_steps != t.steps_per_epoch * config.epochs else ""))


def train_epoch(t: Training, config: TrainConfig, epoch: int, progress, run_dir: Path, dist_info: DistInfo,
                log) -> dict:
    """One epoch of optimizer steps, then the validation pass; returns its ``metrics.csv`` row.

    The loss and the correct count stay on the device; ``read_progress`` reads them once every
    ``device_read_interval`` steps and at the epoch's end (progress bar, divergence check)."""
    t.bundle.train.set_epoch(epoch)
    if hasattr(t.model, "start_epoch"):
        t.model.start_epoch(epoch)  # e.g. freeze the whitening bias after its epochs
    t.trainable.train()
    first_step = epoch * t.steps_per_epoch
    epoch_steps = min(t.steps_per_epoch, t.total_steps - first_step)  # the last may stop early
    read_every = device_read_interval(config, t.device)
    losses = torch.zeros(epoch_steps, device=t.device)
    correct = torch.zeros((), device=t.device)
    seen = 0
    started = time.perf_counter()
    batches = progress_bar(itertools.islice(t.bundle.train, epoch_steps), epoch_steps,
                           f"epoch {epoch + 1}/{config.epochs}", progress)
    for step, (x, y) in enumerate(batches):
        loss, batch_correct = train_step(t.trainable, x, y, t.criterion, t.optimizer, t.scaler, t.scheduler,
                                         t.precision)
        if t.lookahead is not None:
            t.lookahead.after_step(t.model, first_step + step + 1, epoch)
        losses[step] = loss.float()
        correct += batch_correct
        seen += len(y)
        if (step + 1) % read_every == 0 or step + 1 == epoch_steps:
            finite, last_loss, correct_so_far = read_progress(losses, step + 1, correct)  # one blocking read
            if not finite:
                _stop_if_diverged(losses[: step + 1], epoch, lambda i: _lr_of_step(t.scheduler, first_step + i),
                                  run_dir, dist_info, log)
            if progress:
                batches.set_postfix(loss=f"{last_loss:.3f}", acc=f"{100 * correct_so_far / seen:.1f}%")
    totals = all_reduce_sum(torch.stack([losses.sum(), correct, torch.tensor(float(seen), device=t.device),
                                         torch.tensor(float(epoch_steps), device=t.device)]), dist_info)
    train_loss, train_acc, images = torch.stack([totals[0] / totals[3], totals[1] / totals[2], totals[2]]).tolist()
    average_buffers(t.model, dist_info)
    if t.lookahead is not None:
        t.lookahead.end_epoch(t.model)  # evaluate and save the averaged weights
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    train_seconds = time.perf_counter() - started
    # No validation split: empty val columns, never a stand-in number.
    val = evaluate(t.model, t.bundle.val, t.precision) if t.bundle.val is not None else {"loss": None, "accuracy": None}
    return {"epoch": epoch + 1, "lr": _lr_of_step(t.scheduler, first_step + epoch_steps - 1),  # its last step's
            "train_loss": train_loss, "train_acc": train_acc, "val_loss": val["loss"], "val_acc": val["accuracy"],
            "epoch_seconds": time.perf_counter() - started, "images_per_s": images / train_seconds}


@one_run_per_directory(default_run_dir)  # train.lock: a second process on this run_dir stops at once
def train(
    config: TrainConfig,
    run_dir=None,
    *,
    resume: bool = True,
    progress: bool | str = True,
    log=print,
    stop_after_epochs: int | None = None,
    data: DataBundle | None = None,
) -> Run:
    """Train ``config`` in ``run_dir`` and return the run.

    Args:
        config: the recipe (validated already by ``load_config``/``from_dict``).
        run_dir: where the run lives; default ``experiments/<model>-<dataset>-seed<seed>``.
        resume: continue a run found in ``run_dir`` (or return it, if finished). With
            ``resume=False`` an existing run there is an error: nothing is overwritten.
        progress: a tqdm bar per epoch: ``True`` (a widget in Jupyter, text in a terminal; text
            everywhere when ``$COURSE_PROGRESS=text``), ``"text"``, or ``False`` (none).
        log: called with one line per event (device choices, each epoch's metrics).
        stop_after_epochs: stop (without the final evaluation) once this many epochs of the
            run are done, e.g. to show a disconnect and a resume in a lesson.
        data: ``build_data(config, device)``'s bundle, for a caller that trains the same data again
            and again (a benchmark resuming epoch by epoch); None: built here.

    Raises:
        TrainingDiverged: the loss became non-finite; ``final.json`` records where.
        RunDirError: ``run_dir`` holds a different run, or a run and ``resume=False``, or another
            process is training there (``RunDirBusy``: it holds ``run_dir/train.lock``).
    """
    dist_info = init_distributed()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if not dist_info.is_main:
        log = lambda *args, **kwargs: None  # noqa: E731 - only rank 0 talks
        progress = False
    checkpoint_path = run_dir / "last.pt"
    if not resume and ((run_dir / "config.yaml").exists() or checkpoint_path.exists()):
        raise RunDirError(existing_run_message(run_dir))
    if (run_dir / "config.yaml").exists():
        check_same_recipe(run_dir, config)
        existing = load_run(run_dir)
        if existing.final is not None:
            log(f"{shown_path(run_dir)}: {existing.final['status']} run found, not training again")
            return existing

    t = build_training(config, dist_info, data)
    start_epoch, metrics, best = 0, [], {"val_acc": -1.0, "epoch": 0}
    if checkpoint_path.exists():
        start_epoch, metrics, best = restore_checkpoint(t, checkpoint_path)
        log(f"resuming {shown_path(run_dir)} after epoch {start_epoch}/{config.epochs}")
    if dist_info.is_main:
        write_run_start(t, config, run_dir, metrics, dist_info)
    log(describe_training(t, config, dist_info))

    best_weights = None  # the best epoch's weights, in memory until the next checkpoint writes them
    for epoch in range(start_epoch, config.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            log(f"stopped after epoch {epoch} as asked; train() again on {shown_path(run_dir)} to resume")
            return load_run(run_dir) if dist_info.is_main else Run(run_dir, config, metrics, None)
        row = train_epoch(t, config, epoch, progress, run_dir, dist_info, log)
        metrics.append(row)
        log(format_epoch(row, config.epochs))
        if config.keep_best and row["val_acc"] > best["val_acc"]:
            best = {"val_acc": row["val_acc"], "epoch": row["epoch"]}
            if dist_info.is_main:  # a copy on the device, written by the next checkpoint
                best_weights = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
        if dist_info.is_main:
            write_metrics(run_dir / "metrics.csv", metrics)
        if dist_info.is_main and checkpoint_due(config, epoch + 1, stop_after_epochs):
            if best_weights is not None:  # before last.pt, whose record names this best epoch
                save_atomically({"model": best_weights, "epoch": best["epoch"], "val_acc": best["val_acc"]},
                                run_dir / "best.pt")
                best_weights = None
            save_checkpoint(t, config, epoch + 1, metrics, best, checkpoint_path)
        barrier(dist_info)

    evaluation_started = time.perf_counter()
    final = _final_evaluation(t.model, t.bundle, t.precision, run_dir, best, config)
    final["final_evaluation_seconds"] = time.perf_counter() - evaluation_started
    final["rank_weight_digests"] = gather_digests(t.model, dist_info)
    if dist_info.is_main:
        write_json(run_dir / "final.json", final)
    barrier(dist_info)
    log(format_final(final))
    return Run(run_dir, config, metrics, final)


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` with static shapes: the full batches and an epoch's smaller tail batch each
    get their own compiled graph (two compilations in all), instead of a dynamic-shape graph that
    would be slower for every full batch."""
    return torch.compile(model, dynamic=False)


def checkpoint_due(config: TrainConfig, epochs_done: int, stop_after_epochs: int | None = None) -> bool:
    """Whether ``last.pt`` (and a pending ``best.pt``) is written after ``epochs_done`` epochs: every
    ``checkpoint_every`` epochs, after the last epoch, and before a requested stop."""
    return (epochs_done % config.checkpoint_every == 0 or epochs_done == config.epochs
            or (stop_after_epochs is not None and epochs_done >= stop_after_epochs))


def device_read_interval(config: TrainConfig, device: torch.device) -> int:
    """Steps between the loop's reads of the loss from the device (progress bar and divergence
    check): ``device_read_every``, else every step on a CPU (a read costs nothing there) and every
    25 on a GPU (each read makes the host wait for the device)."""
    if config.device_read_every is not None:
        return config.device_read_every
    return 1 if device.type == "cpu" else 25


def read_progress(losses: torch.Tensor, steps_done: int, correct: torch.Tensor) -> tuple[bool, float, float]:
    """One blocking read from the device for everything the loop shows or checks: whether the
    first ``steps_done`` losses of the epoch are all finite, the latest loss, and the correct
    predictions so far."""
    values = torch.stack([torch.isfinite(losses[:steps_done]).all().to(losses.dtype), losses[steps_done - 1],
                          correct.to(losses.dtype)])
    finite, loss, correct_count = values.tolist()
    return bool(finite), loss, correct_count


def run_steps(config: TrainConfig, steps_per_epoch: int, train_images: int) -> int:
    """The optimizer steps of the whole run: every step of ``epochs`` epochs, or ``total_steps``,
    which must end within the last epoch (airbench94's 9.9 epochs: 10 epochs, the last one cut short)."""
    if config.batch_size > train_images:  # one chance-level step per epoch, without a word otherwise
        raise ConfigError(f"config: key 'batch_size' ({config.batch_size}) is larger than the training split "
                          f"({train_images} training images): lower it to at most {train_images}")
    if steps_per_epoch == 0:
        raise ConfigError(f"config: {train_images} training images make no full batch of {config.batch_size} "
                          "(drop_last leaves out the last smaller batch): lower batch_size")
    every_step = steps_per_epoch * config.epochs
    if config.total_steps is None:
        return every_step
    if not every_step - steps_per_epoch < config.total_steps <= every_step:
        raise ConfigError(f"config: key 'total_steps' ({config.total_steps}) must end within the last of "
                          f"{config.epochs} epochs of {steps_per_epoch} steps: {every_step - steps_per_epoch + 1} "
                          f"to {every_step}")
    return config.total_steps


def _lr_of_step(scheduler, global_step: int) -> float:
    """The learning rate that optimizer step ``global_step`` used (0-based, whole run)."""
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](global_step)


def _stop_if_diverged(losses, epoch, lr_of_step, run_dir, dist_info, log) -> None:
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    bad_step = int((~finite).nonzero()[0])  # the first non-finite step of this epoch
    lr = lr_of_step(bad_step)
    kept = (f"the last good checkpoint (epoch {epoch}) is kept in {shown_path(run_dir)}" if epoch
            else "no epoch had finished, so there is no checkpoint")
    message = (f"loss became {losses[bad_step].item()} at epoch {epoch + 1}, step {bad_step + 1} "
               f"(lr {lr:.4g}); training stopped: {kept}")
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "final.json", {"status": "diverged", "epoch": epoch + 1, "step": bad_step + 1,
                                             "lr": lr, "message": message})
    log(message)
    raise TrainingDiverged(message)


def evaluation_table(model, bundle: DataBundle, precision: str = "fp32", tta: str = "none") -> dict:
    """``{"train"|"val"|"test": {"loss", "accuracy"}}``; train is evaluated without augmentation,
    val and test with the test-time augmentation ``tta`` (see ``evaluate.tta_logits``). Without a
    validation split (``val_size: 0``) there is no ``"val"`` entry."""
    table = {"train": evaluate(model, bundle.train_eval, precision)}
    if bundle.val is not None:
        table["val"] = evaluate(model, bundle.val, precision, tta)
    table["test"] = evaluate(model, bundle.test, precision, tta)
    return table


def _final_evaluation(model, bundle: DataBundle, precision, run_dir: Path, best: dict, config) -> dict:
    """The table on the last weights and, if kept and different, the best-by-validation weights.

    The test set is evaluated here once, after training: nothing is ever chosen by it. With
    test-time augmentation, ``without_tta`` also holds the last weights' plain val/test numbers.
    """
    final = {"status": "finished", "epochs": config.epochs, "data_source": bundle.data_source.name,
             "tta": config.tta, "last": evaluation_table(model, bundle, precision, config.tta)}
    if config.tta != "none":
        final["without_tta"] = {name: evaluate(model, batches, precision)
                                for name, batches in (("val", bundle.val), ("test", bundle.test))
                                if batches is not None}
    if config.keep_best:
        if best["epoch"] == config.epochs:
            final["best"] = {"epoch": config.epochs, **final["last"]}
        else:
            best_model = load_weights(run_dir, "best", device=next(model.parameters()).device)[0]
            final["best"] = {"epoch": best["epoch"], **evaluation_table(best_model, bundle, precision, config.tta)}
    return final


def load_weights(run_dir, which: str = "last", device="cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """The model of a run with its ``last`` or ``best`` weights, in eval mode."""
    run = load_run(run_dir)
    path = Path(run_dir) / ("last.pt" if which == "last" else "best.pt")
    state = load_checkpoint(path, map_location=device)
    num_classes = data_lib.SPECS[run.config.dataset].num_classes
    model = build_model(run.config, num_classes).to(device)
    model.load_state_dict(state["model"])
    if resolve_channels_last(torch.device(device), run.config.memory_format, run.config.width):
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), run.config


_check_same_recipe = check_same_recipe  # the names these had in this module
_progress = progress_bar
_text_bar = text_bar

__all__ = [
    "ConfigError", "CheckpointError", "DataBundle", "Run", "RunDirError", "Training", "TrainingDiverged",
    "build_data", "build_model", "build_optimizer", "build_training", "evaluation_table", "format_final", "load_run",
    "load_weights", "read_metrics", "select_train_val", "train", "train_epoch", "train_step",
]
