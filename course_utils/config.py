"""The training recipe as plain data: a dataclass, loaded from YAML, checked before anything runs.

``configs/config.yaml`` is the reference recipe; every other config names only what it changes
(``base: config.yaml``). Command-line and notebook overrides use ``key=value`` strings.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A config is malformed; the message names the file and the key."""


@dataclasses.dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the reference recipe (``configs/config.yaml``)."""

    # --- data
    dataset: str = "cifar10"  # cifar10 | cifar100
    data_dir: typing.Optional[str] = None  # None: $COURSE_DATA_DIR, else data/
    split_seed: int = 42  # the fixed generator of the 40k/10k split
    val_size: int = 10_000  # 0: train on the whole training set, no validation (needs keep_best: false)
    train_per_class: typing.Optional[int] = None  # a stratified subset of the train split
    val_per_class: typing.Optional[int] = None  # a stratified subset of the validation split
    test_per_class: typing.Optional[int] = None  # a stratified subset of the test set (smoke runs only)
    imbalance_ratio: typing.Optional[float] = None  # long-tailed train split (CIFAR-LT profile)
    augment: bool = True  # random crop (pad 4) + horizontal flip, train batches only
    crop_padding: int = 4
    pad_mode: str = "zeros"  # the crop's padding: zeros (black border) | reflect
    flip_mode: str = "random"  # random (each image, each epoch) | alternating (all flip every other epoch)
    drop_last: bool = False  # training epochs of full batches only (the permutation's tail left out)
    # --- model
    model: str = "resnet18"
    norm: str = "batch"  # batch | group
    width: int = 64  # channels of the first stage; 64 is the real ResNet-18
    init: str = "kaiming"
    zero_init_residual: bool = False
    whitening: bool = True  # a model's whitening conv (fastnet) is fitted to the train split and frozen; false: trained
    sync_batchnorm: bool = False  # under DDP: share BatchNorm statistics across GPUs
    # --- optimization
    optimizer: str = "sgd"  # sgd | adamw | muon (Muon on conv filters, SGD with lr/momentum/nesterov on the rest)
    lr: float = 0.1
    momentum: float = 0.9  # SGD momentum; AdamW's beta1
    nesterov: bool = False
    muon_lr: float = 0.24  # optimizer muon: the filters' lr (airbench94_muon's), scaled by the schedule like lr
    muon_momentum: float = 0.6  # optimizer muon: the filters' (Nesterov) momentum
    weight_decay: float = 5e-4
    batch_size: int = 128  # the global batch: split across GPUs under DDP
    epochs: int = 200
    total_steps: typing.Optional[int] = None  # stop after this many optimizer steps, within the last epoch; None: all
    warmup_epochs: int = 5  # per-iteration linear warmup, then per-iteration cosine
    warmup_fraction: typing.Optional[float] = None  # warmup over int(fraction x all steps) instead (needs warmup_epochs: 0)
    warmup_start: typing.Optional[float] = None  # None: lr x (step+1)/warmup; a number: a line from this x lr at step 0
    eta_min: typing.Optional[float] = 1e-6  # the lr at the last step; null only with final_lr_fraction
    final_lr_fraction: typing.Optional[float] = None  # the decay heads for this x lr one step after the last (airbench)
    schedule: str = "cosine"  # after the warmup: cosine | linear (decay to eta_min)
    norm_bias_lr_scale: float = 1.0  # lr multiplier of norm-layer biases (weight decay scaled down by as much)
    lookahead_every: int = 0  # EMA lookahead every N steps (0: off); see course_utils.lookahead
    lookahead_start_epoch: int = 0  # first epoch (0-based) with lookahead steps
    lookahead_sync: str = "every_epoch"  # weights := average at every epoch end | last_step (airbench94, from step 0)
    label_smoothing: float = 0.0
    class_weighting: str = "none"  # none | balanced (inverse class frequency in the loss)
    # --- runtime
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    memory_format: str = "auto"  # auto (GPU: channels_last; CPU: at widths divisible by 16) | channels_last | contiguous
    compile: bool = False  # torch.compile the model (every batch kept: the tail gets its own graph)
    checkpoint_every: int = 1  # epochs between checkpoints (last.pt, best.pt); the last epoch always writes one
    eval_batch_size: typing.Optional[int] = None  # images per evaluation batch; None: 512
    device_read_every: typing.Optional[int] = None  # steps between reads of the loss; None: 1 on a CPU, 25 on a GPU
    keep_best: bool = True  # also keep (and finally evaluate) the best-by-validation weights
    tta: str = "none"  # test-time augmentation of the final val/test evaluation: none | flip | flip_translate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with ``changes`` applied."""
        return from_dict({**self.to_dict(), **changes}, source="overrides")


CHOICES = {
    "dataset": ("cifar10", "cifar100"),
    "norm": ("batch", "group", "none"),
    "optimizer": ("sgd", "adamw", "muon"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "class_weighting": ("none", "balanced"),
    "memory_format": ("auto", "channels_last", "contiguous"),
    "pad_mode": ("zeros", "reflect"),
    "flip_mode": ("random", "alternating"),
    "schedule": ("cosine", "linear"),
    "tta": ("none", "flip", "flip_translate"),
    "lookahead_sync": ("every_epoch", "last_step"),
}
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")  # whether this machine has it is checked at run time
# (minimum, maximum, minimum is exclusive)
RANGES = {
    "val_size": (0, None, False),
    "total_steps": (1, None, False),
    "train_per_class": (1, None, False),
    "val_per_class": (1, None, False),
    "test_per_class": (1, None, False),
    "imbalance_ratio": (1, None, False),
    "crop_padding": (0, 16, False),
    "width": (1, None, False),
    "lr": (0, None, True),
    "momentum": (0, 1, False),
    "muon_lr": (0, None, True),
    "muon_momentum": (0, 1, False),
    "weight_decay": (0, None, False),
    "batch_size": (1, None, False),
    "epochs": (1, None, False),
    "warmup_epochs": (0, None, False),
    "warmup_fraction": (0, 1, True),
    "warmup_start": (0, 1, False),
    "eta_min": (0, None, False),
    "final_lr_fraction": (0, 1, False),
    "label_smoothing": (0, 1, False),
    "norm_bias_lr_scale": (0, None, True),
    "lookahead_every": (0, None, False),
    "lookahead_start_epoch": (0, None, False),
    "checkpoint_every": (1, None, False),
    "eval_batch_size": (1, None, False),
    "device_read_every": (1, None, False),
}


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _check_type(key: str, value, annotation, source: str):
    """Coerce harmless cases (int for float) and reject the rest with one clear line."""
    optional = typing.get_origin(annotation) is typing.Union
    base = [a for a in typing.get_args(annotation) if a is not type(None)][0] if optional else annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: key '{key}' must be a {base.__name__}, got null")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads `1e-3` as a string; accept every spelling float() accepts.
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{source}: key '{key}' must be a float, got {value!r}") from None
    if base is int and isinstance(value, bool) or not isinstance(value, base):
        raise ConfigError(f"{source}: key '{key}' must be a {base.__name__}, got {value!r}")
    return value


def from_dict(raw: dict, source: str = "config") -> TrainConfig:
    """Build and validate a config; raises ``ConfigError`` naming ``source`` and the key."""
    types = _field_types()
    unknown = sorted(set(raw) - set(types))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (valid keys: {', '.join(types)})")
    values = {k: _check_type(k, v, types[k], source) for k, v in raw.items()}
    config = TrainConfig(**values)
    validate(config, source)
    return config


def validate(config: TrainConfig, source: str = "config") -> None:
    """Range and choice checks that types cannot express."""
    from course_utils.init import INIT_SCHEMES
    from course_utils.models import list_models

    choices = {**CHOICES, "model": tuple(list_models()), "init": tuple(INIT_SCHEMES)}
    for key, allowed in choices.items():
        value = getattr(config, key)
        if value not in allowed:
            raise ConfigError(f"{source}: key '{key}' is {value!r}, expected one of {', '.join(allowed)}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        # NaN passes every range check (each comparison is False): refuse it, and infinity, first.
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: key '{field.name}' must be a finite number, got {value!r}")
    for key, (low, high, exclusive) in RANGES.items():
        value = getattr(config, key)
        if value is None:
            continue
        if (value <= low if exclusive else value < low) or (high is not None and value > high):
            bound = f"> {low}" if exclusive else f">= {low}"
            bound += f" and <= {high}" if high is not None else ""
            raise ConfigError(f"{source}: key '{key}' must be {bound}, got {value!r}")
    from course_utils.data import SPECS

    train_size = SPECS[config.dataset].train_size
    if config.val_size >= train_size:
        raise ConfigError(f"{source}: key 'val_size' must be < {train_size} (the {config.dataset} training set), "
                          f"got {config.val_size}")
    if config.val_size == 0 and (config.keep_best or config.val_per_class is not None):
        key = "keep_best" if config.keep_best else "val_per_class"
        raise ConfigError(f"{source}: key '{key}' needs a validation split, but val_size is 0 "
                          f"(set keep_best: false and val_per_class: null)")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs > 0:
        raise ConfigError(f"{source}: key 'warmup_epochs' ({config.warmup_epochs}) must be < epochs ({config.epochs})")
    if config.warmup_fraction is not None and config.warmup_epochs:
        raise ConfigError(f"{source}: keys 'warmup_fraction' ({config.warmup_fraction}) and 'warmup_epochs' "
                          f"({config.warmup_epochs}) both set the warmup: set warmup_epochs: 0")
    if (config.eta_min is None) == (config.final_lr_fraction is None):
        raise ConfigError(f"{source}: keys 'eta_min' ({config.eta_min}) and 'final_lr_fraction' "
                          f"({config.final_lr_fraction}): exactly one sets the end of the schedule, the other is null")
    if config.eta_min is not None and config.eta_min > config.lr:
        raise ConfigError(f"{source}: key 'eta_min' ({config.eta_min}) must be <= lr ({config.lr})")
    if config.lookahead_sync == "last_step" and config.lookahead_start_epoch:
        raise ConfigError(f"{source}: key 'lookahead_start_epoch' ({config.lookahead_start_epoch}) must be 0 with "
                          "lookahead_sync: last_step (its average starts at step 0)")
    if config.imbalance_ratio is not None and config.train_per_class is not None:
        raise ConfigError(f"{source}: keys 'imbalance_ratio' and 'train_per_class' cannot both be set")
    if not DEVICE_PATTERN.fullmatch(config.device):
        raise ConfigError(f"{source}: key 'device' is {config.device!r}, expected auto, cpu, cuda or cuda:N")


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (a binary or damaged file)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw


def load_config(path, overrides: typing.Sequence[str] | dict = (), _chain: tuple[Path, ...] = ()) -> TrainConfig:
    """Load a YAML config (following its ``base:`` chain) and apply ``key=value`` overrides."""
    path = Path(path)
    chain = (*_chain, path)
    if path.resolve() in {p.resolve() for p in _chain}:
        raise ConfigError(f"{chain[0]}: 'base:' chain is a cycle: {' -> '.join(p.name for p in chain)}")
    raw = _read_yaml(path)
    if "base" in raw:
        base_path = path.parent / str(raw.pop("base"))
        merged = load_config(base_path, _chain=chain).to_dict()
        merged.update(raw)
        raw = merged
    config = from_dict(raw, source=str(path))
    return apply_overrides(config, overrides, source=str(path)) if overrides else config


def read_saved_config(path) -> TrainConfig:
    """A run directory's ``config.yaml`` (every key, no ``base:``, as ``save_config`` wrote it);
    a damaged one raises ``ConfigError`` naming the file."""
    return from_dict(_read_yaml(Path(path)), source=str(path))


def apply_overrides(config: TrainConfig, overrides, source: str = "overrides") -> TrainConfig:
    """Apply ``["lr=0.05", "epochs=10"]`` (values parsed as YAML) or a dict of values."""
    if isinstance(overrides, dict):
        changes = dict(overrides)
    else:
        changes = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
            changes[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return from_dict({**config.to_dict(), **changes}, source=f"{source} with overrides")


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_differences(configs: dict) -> dict[str, dict[str, object]]:
    """The keys on which named ``TrainConfig``s disagree: ``{key: {name: value}}``, in field order."""
    rows = {}
    for field in dataclasses.fields(next(iter(configs.values()))):
        values = {name: getattr(config, field.name) for name, config in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows[field.name] = values
    return rows
