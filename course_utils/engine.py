"""The training engine: one explicit loop that notebooks, ``train.py`` and papermill all use.

A run lives in a directory:

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
returns the finished run without training (skip-if-trained).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import itertools
import json
import os
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
from course_utils.config import ConfigError, TrainConfig, read_saved_config, save_config
from course_utils.evaluate import evaluate
from course_utils.init import NORM_LAYERS
from course_utils.loader import BatchIterator
from course_utils.lookahead import Lookahead
from course_utils.models import create_model
from course_utils.repro import (
    autocast,
    environment_fingerprint,
    resolve_device,
    resolve_channels_last,
    resolve_precision,
    seed_everything,
    set_deterministic,
)
from course_utils.run_files import RunDirError, existing_run_message, read_final, read_metrics_csv
from course_utils.run_lock import one_run_per_directory
from course_utils.schedule import config_schedule

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENTS_DIR = REPO_ROOT / "experiments"
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "images_per_s"]
WHITENING_IMAGES = 5000  # training images that set a whitening conv (airbench's number): seconds, not minutes
# Keys that may change between a run and its resumption without changing the result's meaning.
RUNTIME_KEYS = {"device", "compile", "data_dir", "memory_format", "deterministic", "checkpoint_every",
                "eval_batch_size", "device_read_every"}
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
    """SGD or AdamW over ``parameter_groups``; fused (one kernel for all parameters) on a GPU."""
    groups = parameter_groups(config, model)
    fused = uses_fused_optimizer(next(model.parameters()).device)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay, fused=fused)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999),
                             weight_decay=config.weight_decay, fused=fused)


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


# --------------------------------------------------------------------------- the run directory


@dataclasses.dataclass
class Run:
    """A run directory's content, as ``train`` and ``load_run`` return it."""

    run_dir: Path
    config: TrainConfig
    metrics: list[dict]
    final: dict | None  # None while unfinished

    @property
    def finished(self) -> bool:
        return self.final is not None and self.final.get("status") == "finished"

    @property
    def diverged(self) -> bool:
        return self.final is not None and self.final.get("status") == "diverged"


def read_metrics(path: Path) -> list[dict]:
    """The rows of ``metrics.csv``; an empty cell (no validation split) reads as ``None``.
    A damaged file raises ``RunDirError`` naming it."""
    return read_metrics_csv(path, METRIC_COLUMNS)


def write_metrics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def load_run(run_dir) -> Run:
    """Read a run directory (finished or not) without training."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise RunDirError(f"{run_dir}: not a run directory (no config.yaml)")
    config = read_saved_config(config_path)  # damaged files: one line naming them
    return Run(run_dir, config, read_metrics(run_dir / "metrics.csv"), read_final(run_dir / "final.json"))


def _check_same_recipe(run_dir: Path, config: TrainConfig) -> None:
    existing_config = load_run(run_dir).config
    existing = existing_config.to_dict()
    for key, value in config.to_dict().items():
        if key not in RUNTIME_KEYS and key != "drop_last" and existing[key] != value:
            raise RunDirError(
                f"{run_dir}: holds a run with {key}={existing[key]!r}, not {value!r}; "
                "use another run directory or delete this one"
            )
    # Earlier runs with compile: true dropped the last batch whatever drop_last said; environment.json
    # records what a run did, so only the batches must match.
    if existing_drops_last(run_dir, existing_config) != drops_last(config):
        kept = "drop" if existing_drops_last(run_dir, existing_config) else "keep"
        raise RunDirError(
            f"{run_dir}: holds a run whose epochs {kept} their last batch; drop_last={config.drop_last!r} "
            f"would not: set drop_last: {str(existing_drops_last(run_dir, existing_config)).lower()}"
        )


def existing_drops_last(run_dir: Path, existing_config: TrainConfig) -> bool:
    """Whether a run directory's epochs dropped their last batch: environment.json's record, else
    (an environment never written) its config's ``drop_last``."""
    environment = run_dir / "environment.json"
    if environment.exists():
        return bool(json.loads(environment.read_text()).get("drop_last", existing_config.drop_last))
    return drops_last(existing_config)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it: logs and notebook outputs stay free
    of machine-specific folders."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- distributed


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _all_reduce_sum(values: torch.Tensor, dist_info: DistInfo) -> torch.Tensor:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def _average_buffers(model: torch.nn.Module, dist_info: DistInfo) -> None:
    """Average BatchNorm running statistics over ranks at the end of every epoch.

    In training each rank normalizes with the statistics of its own per-GPU batch (as
    single-GPU BatchNorm does at that batch size; ``sync_batchnorm`` shares them instead).
    The running estimates drift apart between ranks; averaging them makes evaluation and
    checkpoints use all ranks' data and keeps every rank's weights identical.
    """
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(dist_info.world_size)


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.enabled:
        import torch.distributed as dist

        dist.barrier()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, to compare weights across ranks or runs."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- training


PROGRESS_ENV = "COURSE_PROGRESS"  # "text": plain-text bars even in Jupyter (set by the course runner)


def progress_style(progress) -> str | None:
    """How ``train(progress=...)`` shows its bars: ``None`` (no bar), ``"text"`` or ``"auto"``.

    ``True`` means ``"auto"`` (tqdm's choice: a widget in a live Jupyter, text in a terminal),
    unless ``$COURSE_PROGRESS`` is ``text``: unattended executions (papermill, the course runner)
    set it, because nothing shows a widget live there and a saved notebook keeps only the
    widget's state, not the bar. Text bars stay readable in the saved outputs.
    """
    if not progress:
        return None
    if progress not in (True, "auto", "text"):
        raise ValueError(f"progress must be True, False, 'auto' or 'text', got {progress!r}")
    if progress == "text" or os.environ.get(PROGRESS_ENV, "").lower() == "text":
        return "text"
    return "auto"


def _progress(iterable, total: int, description: str, enabled):
    style = progress_style(enabled)
    if style is None:
        return iterable
    if style == "text":
        return _text_bar(iterable, total, description)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def _text_bar(iterable, total: int, description: str):
    """A tqdm bar printed once, as one line on stdout, when its epoch ends.

    A saved notebook keeps every intermediate state of a refreshing text bar (one ``\r`` line
    each); this one leaves exactly the final state: steps, time, speed, the running loss and
    accuracy set by ``set_postfix``.
    """
    import io

    from tqdm.std import tqdm

    class EpochBar(tqdm):
        def close(self):
            if not self.disable:
                print(str(self), flush=True)
            super().close()

    return EpochBar(iterable, total=total, desc=description, file=io.StringIO(), ncols=100, ascii=False,
                    mininterval=float("inf"))


def format_epoch(row: dict, epochs: int) -> str:
    val = ("no validation split" if row["val_acc"] is None
           else f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:6.2f}%")
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.5f}  "
        f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:6.2f}%  {val}  "
        f"{row['epoch_seconds']:6.1f}s  {row['images_per_s']:7.0f} img/s"
    )


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
        _check_same_recipe(run_dir, config)
        existing = load_run(run_dir)
        if existing.final is not None:
            log(f"{shown_path(run_dir)}: {existing.final['status']} run found, not training again")
            return existing

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
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    weights = class_weights(config, bundle.train_labels, num_classes)
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device), label_smoothing=config.label_smoothing)

    start_epoch, metrics, best = 0, [], {"val_acc": -1.0, "epoch": 0}
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _match_fused(optimizer, device)
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        if lookahead is not None:
            lookahead.load_state_dict(state["lookahead"])
        start_epoch, metrics, best = state["epoch"], list(state["metrics"]), dict(state["best"])
        log(f"resuming {shown_path(run_dir)} after epoch {start_epoch}/{config.epochs}")

    trainable = model
    if dist_info.enabled:
        trainable = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        trainable = compile_model(trainable)

    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        environment = environment_fingerprint(device)
        environment.update(precision=precision, channels_last=channels_last, compile=config.compile,
                           deterministic=config.deterministic, world_size=dist_info.world_size,
                           data_source=str(bundle.data_source.name), steps_per_epoch=steps_per_epoch,
                           drop_last=drops_last(config), total_steps=total_steps)
        _write_json(run_dir / "environment.json", environment)
        write_metrics(run_dir / "metrics.csv", metrics)  # drops rows written after the checkpoint
    log(f"device {device} ({environment_fingerprint(device)['device_name']}), precision {precision}, "
        f"channels_last {channels_last}, compile {config.compile}, "
        f"world size {dist_info.world_size}, {steps_per_epoch} steps/epoch"
        + (" (last batch dropped)" if drops_last(config) else "")
        + (f", {total_steps} steps in all" if total_steps != steps_per_epoch * config.epochs else ""))

    read_every = device_read_interval(config, device)
    best_weights = None  # the best epoch's weights, in memory until the next checkpoint writes them
    for epoch in range(start_epoch, config.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            log(f"stopped after epoch {epoch} as asked; train() again on {shown_path(run_dir)} to resume")
            return load_run(run_dir) if dist_info.is_main else Run(run_dir, config, metrics, None)
        bundle.train.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(epoch)  # e.g. freeze the whitening bias after its epochs
        trainable.train()
        epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)  # the last may stop early
        losses = torch.zeros(epoch_steps, device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        started = time.perf_counter()
        batches = _progress(itertools.islice(bundle.train, epoch_steps), epoch_steps,
                            f"epoch {epoch + 1}/{config.epochs}", progress)
        for step, (x, y) in enumerate(batches):
            loss, batch_correct = train_step(trainable, x, y, criterion, optimizer, scaler, scheduler, precision)
            if lookahead is not None:
                lookahead.after_step(model, epoch * steps_per_epoch + step + 1, epoch)
            losses[step] = loss.float()
            correct += batch_correct
            seen += len(y)
            if (step + 1) % read_every == 0 or step + 1 == epoch_steps:
                finite, last_loss, correct_so_far = read_progress(losses, step + 1, correct)  # one blocking read
                if not finite:
                    _stop_if_diverged(losses[: step + 1], epoch,
                                      lambda i: _lr_of_step(scheduler, epoch * steps_per_epoch + i), run_dir, dist_info, log)
                if progress:
                    batches.set_postfix(loss=f"{last_loss:.3f}", acc=f"{100 * correct_so_far / seen:.1f}%")
        totals = _all_reduce_sum(torch.stack([losses.sum(), correct, torch.tensor(float(seen), device=device),
                                              torch.tensor(float(epoch_steps), device=device)]), dist_info)
        train_loss, train_acc, images = torch.stack([totals[0] / totals[3], totals[1] / totals[2], totals[2]]).tolist()
        _average_buffers(model, dist_info)
        if lookahead is not None:
            lookahead.end_epoch(model)  # evaluate and save the averaged weights
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        # No validation split: empty val columns, never a stand-in number.
        val = evaluate(model, bundle.val, precision) if bundle.val is not None else {"loss": None, "accuracy": None}
        row = {
            "epoch": epoch + 1,
            "lr": _lr_of_step(scheduler, epoch * steps_per_epoch + epoch_steps - 1),  # the epoch's last step
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val["loss"],
            "val_acc": val["accuracy"],
            "epoch_seconds": time.perf_counter() - started,
            "images_per_s": images / train_seconds,
        }
        metrics.append(row)
        log(format_epoch(row, config.epochs))
        if config.keep_best and row["val_acc"] > best["val_acc"]:
            best = {"val_acc": row["val_acc"], "epoch": row["epoch"]}
            if dist_info.is_main:  # a copy on the device, written by the next checkpoint
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if dist_info.is_main:
            write_metrics(run_dir / "metrics.csv", metrics)
        if dist_info.is_main and checkpoint_due(config, epoch + 1, stop_after_epochs):
            if best_weights is not None:  # before last.pt, whose record names this best epoch
                save_atomically({"model": best_weights, "epoch": best["epoch"], "val_acc": best["val_acc"]},
                                run_dir / "best.pt")
                best_weights = None
            save_atomically(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                 "rng": capture_rng_state(), "config": config.to_dict(), "metrics": metrics, "best": best,
                 "lookahead": None if lookahead is None else lookahead.state_dict()},
                checkpoint_path)
        _barrier(dist_info)

    evaluation_started = time.perf_counter()
    final = _final_evaluation(model, bundle, precision, run_dir, best, config)
    final["final_evaluation_seconds"] = time.perf_counter() - evaluation_started
    final["rank_weight_digests"] = _gather_digests(model, dist_info)
    if dist_info.is_main:
        _write_json(run_dir / "final.json", final)
    _barrier(dist_info)
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
        _write_json(run_dir / "final.json", {"status": "diverged", "epoch": epoch + 1, "step": bad_step + 1,
                                             "lr": lr, "message": message})
    log(message)
    raise TrainingDiverged(message)


def _gather_digests(model, dist_info: DistInfo) -> list[str]:
    digest = weights_digest(model)
    if not dist_info.enabled:
        return [digest]
    import torch.distributed as dist

    digests = [None] * dist_info.world_size
    dist.all_gather_object(digests, digest)
    return digests


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


def format_final(final: dict) -> str:
    """The final train/val/test table as text (accuracy in %, cross-entropy loss)."""
    lines = [f"{'weights':<18}{'split':<7}{'accuracy':>10}{'loss':>9}"]
    if final.get("tta", "none") != "none":
        lines.insert(0, f"val and test with test-time augmentation '{final['tta']}' (train without)")
    for which in ("last", "best"):
        if which not in final:
            continue
        label = "last epoch" if which == "last" else f"best val (ep {final['best']['epoch']})"
        for split in ("train", "val", "test"):
            if split not in final[which]:  # no validation split
                continue
            r = final[which][split]
            lines.append(f"{label:<18}{split:<7}{100 * r['accuracy']:>9.2f}%{r['loss']:>9.4f}")
    for split, r in final.get("without_tta", {}).items():
        lines.append(f"{'last, no TTA':<18}{split:<7}{100 * r['accuracy']:>9.2f}%{r['loss']:>9.4f}")
    return "\n".join(lines)


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


__all__ = [
    "ConfigError", "CheckpointError", "DataBundle", "Run", "RunDirError", "TrainingDiverged",
    "build_data", "build_model", "build_optimizer", "evaluation_table", "format_final", "load_run", "load_weights",
    "read_metrics", "select_train_val", "train", "train_step",
]
