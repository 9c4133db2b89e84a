"""Transfer learning on a CPU: EfficientNet-Lite + a new Food-11 head, in two stages.

Stage 0 (cache): the frozen lower blocks run once over `views` augmented copies of every training image
(and once over the validation images, preprocessed exactly as serving does); their output maps are kept in
memory (float16). Everything after is cheap, because the expensive lower layers never run again:
Stage 1: a new linear head learns on the pooled features of the cached maps (frozen top).
Stage 2: the top `finetune_blocks` blocks, the head conv and the classifier are fine-tuned on the cached
maps with a lower learning rate; each epoch draws a random cached view of each image. With
`augment_every_epoch`, stage 2 instead makes a fresh augmented view of every image each epoch and runs the
frozen lower blocks on it again: slower per epoch, but the top blocks never see the same view twice, which
is what keeps a small training set from being memorised.
Both stages stop early on validation accuracy and keep the best weights. A checkpoint is written after
every epoch, with the random generators' states; `resume=True` continues from it (the caches are rebuilt
identically from the seed), so a killed run ends where an uninterrupted one would.

Training images come from the data folder's training split plus any `extra` folders; with `balance`, both
stages weight the loss so that every class counts the same however many photos it has.

With `time_limit_s`, training stops when the limit is spent: an epoch starts only when the time left is at
least the stage's last epoch took (stage 1 always runs one), stage 2 only when time is left, and the best
epoch so far is written. The time spent is kept in the checkpoint, so a resumed run has only what is left.
With `soft_targets` (a teacher's log-probabilities per training photo, `SoftTargets`), the loss is a
blend of the usual cross-entropy and the KL divergence to the teacher's predictions softened by
`distill_temperature` (knowledge distillation, weight `distill_weight`).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from servetune.config import FOOD11_CLASSES, ModelSpec
from servetune.errors import ServetuneError, first_line
from servetune.model.augment import Augmentation
from servetune.model.augment_workers import BatchAugmenter
from servetune.model.backbones import BACKBONES, BackboneError, build_backbone
from servetune.model.balance import class_weights, per_class_accuracy
from servetune.model.data import LoadedImages, load_images, read_split, read_training, subset
from servetune.model.preprocess import preprocess

CHECKPOINT = "checkpoint.pt"
TRAINED = "model.pt"
SUMMARY = "train_summary.json"
# ImageNet weights of EfficientNet-Lite expect (x - 127) / 128 per channel (TensorFlow's Lite preprocessing).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


class TrainError(ServetuneError):
    pass


@dataclass
class TrainConfig:
    data: Path
    out: Path
    extra: list[Path] = field(default_factory=list)  # more training folders (any layout), added to data/training
    balance: bool = False  # weight the loss by inverse class frequency
    backbone: str = "lite0"
    input_size: int = 160
    resize: int | None = None  # default: input_size / 0.875 (the usual centre-crop ratio)
    views: int = 3
    augment_every_epoch: bool = False
    head_views: int = 1  # stage 1 learns on the pooled features of this many views (pooling costs a forward)
    finetune_blocks: int = 4
    head_epochs: int = 40
    finetune_epochs: int = 12
    head_lr: float = 2e-3
    finetune_lr: float = 3e-4
    batch_size: int = 64
    patience: int = 4
    label_smoothing: float = 0.1
    mixup: float = 0.0  # stage 2: Beta(alpha, alpha) mixup of the lower blocks' maps; 0 = off
    seed: int = 0
    per_class: int | None = None  # use only the first N training images of each class (data/training first)
    resume: bool = False
    init_from: Path | None = None  # a model.pt to train further instead of starting from ImageNet's weights
    threads: int | None = None
    augment_workers: int | None = None  # processes that augment stage 2's batches; None: all cores but one on a GPU, 0 on a CPU
    data_description: str = ""
    augmentation: Augmentation = field(default_factory=Augmentation)
    time_limit_s: float | None = None  # stop when this much time is spent (with resumed runs' time)
    soft_targets: Path | None = None  # a teacher's predictions (SoftTargets.save): distil from them
    distill_weight: float = 0.7  # the share of the teacher's term in the loss
    distill_temperature: float = 2.0


class SoftTargets:
    """A teacher's log-probabilities for training photos, by resolved path: what distillation learns from."""

    def __init__(self, paths: list[str], log_probabilities: np.ndarray):
        self.rows = {path: row for path, row in zip(paths, log_probabilities, strict=True)}
        self.classes = log_probabilities.shape[1]

    @classmethod
    def from_probabilities(cls, paths: list[Path], probabilities: np.ndarray) -> SoftTargets:
        return cls([str(path.resolve()) for path in paths],
                   np.log(np.clip(probabilities, 1e-7, 1.0)).astype(np.float32))

    def save(self, path: Path) -> Path:
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, paths=np.array(list(self.rows)), log_probabilities=np.stack(list(self.rows.values())))
        partial.replace(path)  # whole or not at all
        return path

    @classmethod
    def load(cls, path: Path) -> SoftTargets:
        try:
            with np.load(path) as saved:
                return cls([str(p) for p in saved["paths"]], saved["log_probabilities"])
        except (OSError, KeyError, ValueError) as error:
            raise TrainError(f"{path}: not a file of soft targets ({first_line(error)})") from None

    def for_images(self, paths: list[Path], labels: list[int]) -> torch.Tensor:
        """(N, classes) log-probabilities in the images' order; a photo the teacher did not see gets its
        label's one-hot (almost: log 1e-7 elsewhere)."""
        fallback = np.full(self.classes, np.log(1e-7), dtype=np.float32)
        rows = []
        for path, label in zip(paths, labels, strict=True):
            row = self.rows.get(str(path.resolve()))
            if row is None:
                row = fallback.copy()
                row[label] = 0.0
            rows.append(row)
        return torch.from_numpy(np.stack(rows))


class Deadline:
    """The time limit of one training, counted over resumed runs (`before`: the time earlier runs spent)."""

    def __init__(self, limit_s: float | None, before: float = 0.0):
        self.limit_s, self.before, self.started = limit_s, before, time.perf_counter()
        self.reached = False  # set when an epoch was not started for lack of time

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def allows(self, epoch_s: float) -> bool:
        """Whether an epoch expected to take `epoch_s` still fits."""
        if self.limit_s is None or self.elapsed() + epoch_s <= self.limit_s:
            return True
        self.reached = True
        return False


def model_spec(config: TrainConfig) -> ModelSpec:
    return ModelSpec(
        name=f"food11-{config.backbone}-{config.input_size}",
        class_names=FOOD11_CLASSES,
        input_size=config.input_size,
        resize=config.resize or round(config.input_size / 0.875),
        mean=LITE_MEAN,
        std=LITE_STD,
        decode="reduced",  # trained on reduced decodes; its recorded accuracy is measured through them
        backbone=f"efficientnet-{config.backbone}",
        precision="fp32",
        data=config.data_description or f"Food-11 layout folder {config.data}",
    )


def choose_device(threads: int | None) -> torch.device:
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )


def load_split(config: TrainConfig, split: str, progress: Progress) -> LoadedImages:
    listed = read_training(config.data, config.extra) if split == "training" else read_split(config.data, split)
    samples = subset(listed.samples, config.per_class)
    task = progress.add_task(f"read {split}", total=len(samples), info="")
    # Keep a little more than the network needs: random crops zoom in, and memory stays bounded.
    loaded = load_images(samples, max_side=2 * config.input_size, progress=lambda: progress.advance(task))
    if loaded.corrupt:
        progress.console.print(f"[yellow]{split}: skipped {len(loaded.corrupt)} corrupt images, e.g. {loaded.corrupt[0]}")
    return loaded


@torch.no_grad()
def cache_lower(model, arrays, cut: int, device, batch_size: int) -> torch.Tensor:
    """Run stem + blocks[:cut] over float32 arrays (N,3,H,W); return float16 maps on the CPU."""
    outputs = []
    for start in range(0, len(arrays), batch_size):
        batch = torch.from_numpy(np.stack(arrays[start : start + batch_size])).to(device)
        outputs.append(model.forward_blocks(model.stem(batch), 0, cut).half().cpu())
    return torch.cat(outputs)


@dataclass
class Caches:
    """Stage 0's output: lower-block maps of `views` augmented copies of the training images (views, N, ...)
    and of the validation images; the decoded training images only when stage 2 augments anew each epoch."""

    train_maps: torch.Tensor
    train_labels: torch.Tensor
    val_maps: torch.Tensor
    val_labels: torch.Tensor
    train_images: list | None
    train_soft: torch.Tensor | None = None  # the teacher's log-probabilities, in train_labels' order


def build_caches(config, model, spec, cut, device, progress) -> Caches:
    train, val = load_split(config, "training", progress), load_split(config, "validation", progress)
    rng = np.random.default_rng(config.seed)
    model.eval()
    task = progress.add_task("cache features", total=config.views * len(train.images) + len(val.images), info="")
    train_maps = []
    index_batches = [list(range(i, min(i + config.batch_size, len(train.images))))
                     for i in range(0, len(train.images), config.batch_size)]
    with BatchAugmenter(train.images, spec, config.augmentation, augment_workers(config, device)) as augmenter:
        for view in range(config.views):
            maps = []
            seeds = rng.integers(0, 2**63 - 1, size=len(index_batches))
            for indices, arrays in zip(index_batches, augmenter.batches(index_batches, seeds), strict=True):
                maps.append(cache_lower(model, arrays, cut, device, config.batch_size))
                progress.advance(task, len(indices))
            train_maps.append(torch.cat(maps))
            progress.update(task, info=f"view {view + 1}/{config.views}")
    val_maps = []
    for start in range(0, len(val.images), config.batch_size):
        images = val.images[start : start + config.batch_size]
        val_maps.append(cache_lower(model, [preprocess(i, spec) for i in images], cut, device, config.batch_size))
        progress.advance(task, len(images))
    soft = None
    if config.soft_targets is not None:
        teacher = SoftTargets.load(config.soft_targets)
        if teacher.classes != len(FOOD11_CLASSES):
            raise TrainError(f"{config.soft_targets}: {teacher.classes} classes, not Food-11's {len(FOOD11_CLASSES)}")
        soft = teacher.for_images(train.paths, train.labels)
    return Caches(
        torch.stack(train_maps),
        torch.tensor(train.labels),
        torch.cat(val_maps),
        torch.tensor(val.labels),
        # kept only when needed: at input 224 the decoded Food-11 training set is several GB
        train.images if config.augment_every_epoch else None,
        soft,
    )


def top_modules(model, cut: int) -> list[nn.Module]:
    """What stage 2 trains: the blocks from `cut` up, the head conv and its batch norm, the classifier."""
    return [*model._blocks[cut:], model._conv_head, model._bn1, model._fc]


def top_forward(model, maps: torch.Tensor, cut: int) -> torch.Tensor:
    return model.classify(model.pooled_features(model.forward_blocks(maps.float(), cut, len(model._blocks))))


@torch.no_grad()
def pooled(model, maps: torch.Tensor, cut: int, device, batch_size: int) -> torch.Tensor:
    model.eval()
    out = [
        model.pooled_features(model.forward_blocks(maps[i : i + batch_size].to(device).float(), cut, len(model._blocks)))
        for i in range(0, len(maps), batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def accuracy_and_loss(logits_fn, inputs: torch.Tensor, labels: torch.Tensor, device, batch_size: int):
    correct, loss = 0, 0.0
    for i in range(0, len(inputs), batch_size):
        logits = logits_fn(inputs[i : i + batch_size].to(device))
        target = labels[i : i + batch_size].to(device)
        loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return correct / len(inputs), loss / len(inputs)


def mix_batch(inputs: torch.Tensor, alpha: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (on the lower blocks' maps, i.e. manifold mixup): each example blended with a partner from the
    same batch by one weight drawn from Beta(alpha, alpha). Returns (mixed, partner index, weight)."""
    weight = float(torch.distributions.Beta(alpha, alpha).sample().item()) if alpha > 0 else 1.0
    partner = torch.randperm(len(inputs), generator=generator)
    inputs = inputs.float()
    return weight * inputs + (1 - weight) * inputs[partner], partner, weight


def training_loss(config: TrainConfig, caches: Caches, device):
    """(logits, labels, teacher's log-probabilities or None) -> loss: cross-entropy, blended with the KL
    divergence to the teacher's softened predictions when there are soft targets."""
    cross_entropy = nn.CrossEntropyLoss(weight=loss_weights(config, caches, device),
                                        label_smoothing=config.label_smoothing)
    temperature, share = config.distill_temperature, config.distill_weight

    def loss(logits, labels, soft):
        hard = cross_entropy(logits, labels)
        if soft is None:
            return hard
        teacher = torch.softmax(soft / temperature, dim=1)
        student = torch.log_softmax(logits / temperature, dim=1)
        distilled = nn.functional.kl_div(student, teacher, reduction="batchmean") * temperature**2
        return share * distilled + (1 - share) * hard

    return loss


def optimise(logits_fn, batches, optimizer, criterion, device, mixup: float = 0.0,
             generator: torch.Generator | None = None) -> tuple[float, float]:
    """One epoch of gradient steps over (inputs, labels, soft targets or None) batches; returns the mean
    training loss and accuracy (against the batch's own labels, also when mixup blends it with partners)."""
    total_loss, correct, count = 0.0, 0, 0
    for inputs, labels, soft in batches:
        target = labels.to(device)
        soft = None if soft is None else soft.to(device)
        if mixup > 0:
            inputs, partner, weight = mix_batch(inputs, mixup, generator)
        logits = logits_fn(inputs.to(device))
        loss = criterion(logits, target, soft)
        if mixup > 0:
            partner = partner.to(device)
            loss = weight * loss + (1 - weight) * criterion(logits, target[partner],
                                                             None if soft is None else soft[partner])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(target)
        correct += (logits.argmax(1) == target).sum().item()
        count += len(target)
    return total_loss / count, correct / count


@dataclass
class StageState:
    """What a checkpoint keeps of one stage, so that --resume continues where training stopped."""

    stage: int
    epoch: int = 0  # epochs completed
    best_accuracy: float = -1.0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def generator_states(generators: dict) -> dict:
    """The states of torch's global generator (dropout, mixup weights) and of a stage's own generators."""
    states = {"torch_global": torch.get_rng_state()}
    for name, generator in generators.items():
        states[name] = generator.get_state() if isinstance(generator, torch.Generator) else generator.bit_generator.state
    return states


def restore_generators(states: dict, generators: dict) -> None:
    torch.set_rng_state(states["torch_global"])
    for name, generator in generators.items():
        if isinstance(generator, torch.Generator):
            generator.set_state(states[name])
        else:
            generator.bit_generator.state = states[name]


def save_checkpoint(path: Path, model, optimizer, scheduler, state: StageState, best_state: dict, generators: dict,
                    finished: list[StageState], elapsed_s: float = 0.0) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
         "state": asdict(state), "best": best_state, "elapsed_s": elapsed_s,
         "generators": generator_states(generators), "finished": [asdict(s) for s in finished]},
        tmp,
    )
    tmp.replace(path)


def run_stage(config, stage, model, params, lr, epochs, train_step, evaluate, progress, resume_from, generators,
              finished, deadline: Deadline | None = None):
    """Epoch loop shared by both stages: train, validate, early-stop, stop at the `deadline`, checkpoint
    (with `generators`' states and the `finished` stages, so a resumed run repeats neither)."""
    deadline = deadline or Deadline(None)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    state = StageState(stage)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume_from is not None and resume_from["state"]["stage"] == stage:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        state = StageState(**resume_from["state"])
        best_state = resume_from["best"]
        if "generators" in resume_from:  # checkpoints of earlier versions have none
            restore_generators(resume_from["generators"], generators)
        if "scheduler" in resume_from:
            scheduler.load_state_dict(resume_from["scheduler"])
        else:  # earlier checkpoints: replay the schedule from the initial rate (the cosine steps are relative)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            for _ in range(state.epoch):
                scheduler.step()
    task = progress.add_task(f"stage {stage}", total=epochs, completed=state.epoch, info="")
    epoch_s = 0.0
    while (state.epoch < epochs and state.bad_epochs < config.patience
           and (deadline.allows(epoch_s) or (stage == 1 and state.epoch == 0))):
        epoch_started = time.perf_counter()
        train_loss, train_acc = train_step(optimizer)
        scheduler.step()
        val_acc, val_loss = evaluate()
        state.epoch += 1
        state.history.append(
            {"epoch": state.epoch, "train_loss": train_loss, "train_accuracy": train_acc,
             "val_loss": val_loss, "val_accuracy": val_acc}
        )
        if val_acc > state.best_accuracy:
            state.best_accuracy, state.bad_epochs = val_acc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.bad_epochs += 1
        save_checkpoint(config.out / CHECKPOINT, model, optimizer, scheduler, state, best_state, generators, finished,
                        deadline.elapsed())
        epoch_s = time.perf_counter() - epoch_started
        info = (f"loss {train_loss:.3f} acc {train_acc:.3f} | val loss {val_loss:.3f} acc {val_acc:.3f} "
                f"(best {state.best_accuracy:.3f})")
        progress.update(task, advance=1, info=info)
        if not progress.console.is_terminal:  # a log file gets one line per epoch
            progress.console.print(f"stage {stage} epoch {state.epoch}: {info}")
    model.load_state_dict(best_state)
    return state


def loss_weights(config, caches: Caches, device) -> torch.Tensor | None:
    if not config.balance:
        return None
    counts = torch.bincount(caches.train_labels, minlength=len(FOOD11_CLASSES)).tolist()
    return torch.tensor(class_weights(counts), dtype=torch.float32, device=device)


def train_head(config, model, caches: Caches, cut, device, progress, resume, deadline: Deadline | None = None):
    views = min(config.head_views, caches.train_maps.shape[0])
    features = pooled(model, caches.train_maps[:views].flatten(0, 1), cut, device, 256)
    labels = caches.train_labels.repeat(views)
    soft = None if caches.train_soft is None else caches.train_soft.repeat(views, 1)
    val_features = pooled(model, caches.val_maps, cut, device, 256)
    val_labels = caches.val_labels
    generator = torch.Generator().manual_seed(config.seed + 1)
    criterion = training_loss(config, caches, device)

    def train_step(optimizer):
        model._dropout.train()
        order = torch.randperm(len(features), generator=generator)
        batches = ((features[index], labels[index], None if soft is None else soft[index])
                   for index in (order[i : i + 256] for i in range(0, len(order), 256)))
        return optimise(model.classify, batches, optimizer, criterion, device)

    def evaluate():
        model.eval()
        return accuracy_and_loss(model.classify, val_features, val_labels, device, 512)

    return run_stage(
        config, 1, model, model._fc.parameters(), config.head_lr, config.head_epochs, train_step, evaluate,
        progress, resume, {"order": generator}, [], deadline,
    )


def fresh_batches(config, model, caches: Caches, augmenter: BatchAugmenter, order, cut, device, rng, progress):
    """(lower-block maps of a new augmented view, labels) per batch, in `order`; advances a progress task.
    The lower blocks stay in eval mode (train_step sets only the top to train), so their batch-norm
    statistics remain ImageNet's."""
    task = progress.add_task("augment + train", total=len(order), info="")
    index_batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    seeds = rng.integers(0, 2**63 - 1, size=len(index_batches))
    for index, arrays in zip(index_batches, augmenter.batches([i.tolist() for i in index_batches], seeds), strict=True):
        progress.advance(task, len(index))
        yield (cache_lower(model, arrays, cut, device, config.batch_size), caches.train_labels[index],
               None if caches.train_soft is None else caches.train_soft[index])
    progress.remove_task(task)


def augment_workers(config: TrainConfig, device: torch.device) -> int:
    if config.augment_workers is not None:
        return config.augment_workers
    return max(0, len(os.sched_getaffinity(0)) - 1) if device.type == "cuda" else 0


def finetune_top(config, model, spec, caches: Caches, cut, device, progress, resume, finished,
                 deadline: Deadline | None = None):
    top = top_modules(model, cut)
    params = [p for module in top for p in module.parameters()]
    views, count = caches.train_maps.shape[:2]
    generator = torch.Generator().manual_seed(config.seed + 2)
    rng = np.random.default_rng(config.seed + 3)
    criterion = training_loss(config, caches, device)
    soft = caches.train_soft

    def train_step(optimizer):
        model.eval()
        for module in top:
            module.train()
        model._dropout.train()
        order = torch.randperm(count, generator=generator)
        if config.augment_every_epoch:
            batches = fresh_batches(config, model, caches, augmenter, order, cut, device, rng, progress)
        else:
            chosen_view = torch.randint(views, (count,), generator=generator)
            indices = (order[i : i + config.batch_size] for i in range(0, count, config.batch_size))
            batches = ((caches.train_maps[chosen_view[index], index], caches.train_labels[index],
                        None if soft is None else soft[index]) for index in indices)
        return optimise(lambda maps: top_forward(model, maps, cut), batches, optimizer, criterion, device,
                        config.mixup, generator)

    def evaluate():
        model.eval()
        return accuracy_and_loss(lambda m: top_forward(model, m, cut), caches.val_maps, caches.val_labels, device, 256)

    workers = augment_workers(config, device) if config.augment_every_epoch else 0
    with BatchAugmenter(caches.train_images or [], spec, config.augmentation, workers) as augmenter:
        return run_stage(
            config, 2, model, params, config.finetune_lr, config.finetune_epochs, train_step, evaluate,
            progress, resume, {"order": generator, "augment": rng}, finished, deadline,
        )


@torch.no_grad()
def validation_per_class(model, caches: Caches, cut, device) -> dict[str, float]:
    model.eval()
    predicted = torch.cat([top_forward(model, caches.val_maps[i : i + 256].to(device), cut).argmax(1).cpu()
                           for i in range(0, len(caches.val_maps), 256)])
    return per_class_accuracy(caches.val_labels.numpy(), predicted.numpy(), FOOD11_CLASSES)


def starting_model(config: TrainConfig, spec: ModelSpec):
    """ImageNet's weights with a new head, or (init_from) a trained model's weights, head included."""
    if config.init_from is None:
        return build_backbone(config.backbone, len(spec.class_names))
    model, _ = load_trained(config.init_from)
    if model.name != config.backbone:
        raise TrainError(f"{config.init_from}: a {model.name} model, but the backbone asked for is {config.backbone}")
    return model


def train(config: TrainConfig, bars: Progress | None = None) -> Path:
    """Train and write `out/model.pt` (weights + ModelSpec) and `out/train_summary.json`; returns model.pt.
    `bars`: a rich Progress to show the steps in [default: its own]."""
    if config.backbone not in BACKBONES:
        raise TrainError(f"unknown backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    config.out.mkdir(parents=True, exist_ok=True)
    device = choose_device(config.threads)
    torch.manual_seed(config.seed)
    spec = model_spec(config)
    model = starting_model(config, spec).to(device)
    cut = len(model._blocks) - config.finetune_blocks
    if not 0 <= cut < len(model._blocks):
        raise TrainError(f"finetune_blocks must be 1..{len(model._blocks)} for {config.backbone}")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in top_modules(model, cut):
        for p in module.parameters():
            p.requires_grad_(True)
    resume = None
    checkpoint_path = config.out / CHECKPOINT
    if config.resume:
        if not checkpoint_path.is_file():
            raise TrainError(f"{checkpoint_path}: no checkpoint to resume from")
        resume = torch.load(checkpoint_path, map_location=device, weights_only=False)
    started = time.perf_counter()
    deadline = Deadline(config.time_limit_s, resume.get("elapsed_s", 0.0) if resume is not None else 0.0)
    timings = {}
    with progress_bar() if bars is None else nullcontext(bars) as progress:
        caches = build_caches(config, model, spec, cut, device, progress)
        timings["cache_s"] = time.perf_counter() - started
        progress.console.print(f"cached the lower blocks' output for {caches.train_maps.shape[1]} training and "
                               f"{len(caches.val_maps)} validation images in {timings['cache_s']:.0f} s")
        stages = [StageState(**s) for s in resume.get("finished", [])] if resume is not None else []
        if resume is None or resume["state"]["stage"] == 1:
            stages.append(train_head(config, model, caches, cut, device, progress, resume, deadline))
            resume = None
        timings["head_s"] = time.perf_counter() - started - timings["cache_s"]
        if config.finetune_epochs > 0 and (resume is not None or deadline.allows(0.0)):
            stages.append(finetune_top(config, model, spec, caches, cut, device, progress, resume, list(stages),
                                       deadline))
        val_per_class = validation_per_class(model, caches, cut, device)
        progress.console.print("validation accuracy per class: " + ", ".join(
            f"{name} {accuracy:.1%}" for name, accuracy in val_per_class.items()))
    timings["total_s"] = time.perf_counter() - started
    val_accuracy = stages[-1].best_accuracy  # the weights kept are the last stage's best
    spec = spec.model_copy(update={"accuracy": {"validation": round(val_accuracy, 4)}})
    path = config.out / TRAINED
    torch.save({"backbone": config.backbone, "state_dict": model.cpu().state_dict(), "spec": spec.model_dump()}, path)
    summary = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "device": str(device), "threads": torch.get_num_threads(), "timings": timings,
        "stopped_by_time_limit": deadline.reached, "elapsed_s": round(deadline.elapsed(), 1),
        "validation_accuracy": val_accuracy, "validation_per_class": val_per_class,
        "training_per_class": dict(zip(FOOD11_CLASSES, torch.bincount(
            caches.train_labels, minlength=len(FOOD11_CLASSES)).tolist(), strict=True)),
        "stages": [asdict(s) for s in stages],
    }
    (config.out / SUMMARY).write_text(json.dumps(summary, indent=2))
    return path


def load_trained(path: str | Path):
    """model.pt -> (EfficientNetLite in eval mode, ModelSpec)."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such trained model (write one with `servetune model train`)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        spec = ModelSpec(**saved["spec"])
        model = build_backbone(saved["backbone"], len(spec.class_names), pretrained=False)
        model.load_state_dict(saved["state_dict"])
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, TypeError, ValueError, BackboneError) as error:
        raise TrainError(f"{path}: not a model written by `servetune model train` ({first_line(error)})") from None
    return model.eval(), spec
