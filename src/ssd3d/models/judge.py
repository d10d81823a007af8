"""ToyWorld's judge: a small image classifier that scores generated objects.

Trained on ground-truth renders only, with its own network and weights (a plain CNN, no
code shared with the prior's UNet), so that a generated object is scored by something
that never saw the prior's mistakes. Two heads on one trunk:

- prompt head (P classes): R-precision = the fraction of an object's views whose top-1
  prompt is the right one (CLIP R-precision in DreamFusion, with a closed prompt set);
- view head (4 classes, front / side / back / overhead): the multi-face (Janus) score =
  the balanced accuracy of the predicted view labels against the cameras' true ones (the
  mean, over the true labels present, of the fraction of that label's views read right).
  A Janus object shows a "front" from behind, so its back views are read as front views.
  Balanced, because an orbit holds twice as many side views as front or back ones: a
  judge that answers "side" for every view of an object it cannot read would otherwise
  score 0.5. Only meaningful for shapes whose views differ (``VIEW_DISTINCT_SHAPES``: a
  sphere looks the same from every side, so its front/side/back labels are chance), and
  by default the view head is trained on those shapes only (``JudgeConfig.view_shapes``).

Mild augmentation (shifts of a few pixels, a slight blur, pixel noise, a small gain jitter)
so that slightly off-centre, soft or noisy generated renders are still judged by content. No flips: a
mirrored asymmetric shape is not a ToyWorld object, and a flip can change its view label.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd3d.config import to_dict
from ssd3d.errors import SSD3DError
from ssd3d.models.unet import split_words
from ssd3d.toyworld.dataset_format import (
    ToyDataset,
    read_safetensors,
    write_safetensors_atomic,
)
from ssd3d.toyworld.shapes import VIEW_DISTINCT_SHAPES
from ssd3d.toyworld.vocabulary import parse_prompt

JUDGE_FILENAME = "judge.safetensors"
JUDGE_FORMAT = "ssd3d-toy-judge"
JUDGE_FORMAT_VERSION = 1
# Hidden width of the layer shared by the two heads.
HEAD_HIDDEN = 128
# JudgeConfig.view_shapes: which renders train the view head.
VIEW_SHAPE_CHOICES = ("distinct", "all")


@dataclass(frozen=True)
class JudgeConfig:
    """Training of the judge."""

    # Optimiser steps (about 40 epochs of a 30-prompt x 200-view dataset at batch 128).
    steps: int = 2000
    # Images per step.
    batch_size: int = 128
    # AdamW learning rate (a common default for small CNNs trained from scratch).
    lr: float = 1e-3
    # AdamW decoupled weight decay.
    weight_decay: float = 1e-4
    # Channels of the first conv stage; stages double it (w, 2w, 4w).
    width: int = 32
    # Largest shift in pixels of the augmentation (edge pixels repeated): a generated
    # object a little off-centre is still the same object.
    shift_px: int = 2
    # Standard deviation of the Gaussian pixel noise added in augmentation ([0, 1] scale).
    noise_std: float = 0.03
    # Per-image gain drawn from [1 - g, 1 + g] in augmentation (shading differences).
    gain_jitter: float = 0.05
    # Largest Gaussian blur sigma in pixels (drawn uniformly per image from [0, max]):
    # generated and resized renders have softer edges than ground truth.
    blur_sigma_max: float = 0.8
    # Which renders train the view head: "distinct", those of the shapes whose views
    # differ (toyworld VIEW_DISTINCT_SHAPES; a prompt outside ToyWorld's vocabulary counts
    # as distinct); "all", every render (the first shipped judge). The view labels of a
    # sphere or a cube are chance: learning them taught the head to answer "side", the
    # commonest label, for any view it cannot read (docs/results/judge-views.md).
    view_shapes: str = "distinct"
    # Keep the conv trunk as it is (weights and batch-norm statistics) and train only the
    # shared hidden layer and the heads: fine-tuning a judge (``init``) at a third of the
    # cost of a step, since the trunk runs forward only.
    freeze_trunk: bool = False
    # Fraction of the renders held out to report accuracy (0 trains on all).
    val_fraction: float = 0.1
    # Seed of the split, init, batches and augmentation.
    seed: int = 0
    # torch threads while training; 0 keeps the process's setting.
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "width"):
            if getattr(self, name) < 1:
                raise SSD3DError(f"judge '{name}' must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0:
            raise SSD3DError(f"judge 'lr' must be > 0; got {self.lr}")
        if self.view_shapes not in VIEW_SHAPE_CHOICES:
            raise SSD3DError(
                f"judge 'view_shapes' must be one of {', '.join(VIEW_SHAPE_CHOICES)}; "
                f"got {self.view_shapes!r}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise SSD3DError(f"judge 'val_fraction' must lie in [0, 1); got {self.val_fraction}")
        for name in ("shift_px", "noise_std", "gain_jitter", "blur_sigma_max", "threads"):
            if getattr(self, name) < 0:
                raise SSD3DError(f"judge '{name}' must be >= 0; got {getattr(self, name)}")


def shipped_judge_path() -> Path:
    """Where the shipped judge lives inside the installed package."""
    return Path(str(resources.files("ssd3d") / "models" / "assets" / JUDGE_FILENAME))


class JudgeNet(nn.Module):
    """Three stages of (conv-BN-ReLU) x 2 + max-pool, then a shared hidden layer and two
    heads: images [B, 3, R, R] in [0, 1] -> (prompt logits [B, P], view logits [B, V]).

    The trunk ends in a flatten, not a global average, so the heads see where things are
    (a handle on the left or the right is what tells a front view from a back view).
    """

    def __init__(self, num_prompts: int, num_views: int, resolution: int, width: int) -> None:
        super().__init__()
        if resolution % 8:
            raise SSD3DError(f"judge resolution must be divisible by 8; got {resolution}")
        layers: list[nn.Module] = []
        c_in = 3
        for c in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        features = c_in * (resolution // 8) ** 2
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(features, HEAD_HIDDEN), nn.ReLU())
        self.prompt_head = nn.Linear(HEAD_HIDDEN, num_prompts)
        self.view_head = nn.Linear(HEAD_HIDDEN, num_views)

    def features(self, images: Tensor) -> Tensor:
        """The trunk's output [B, 4w, R/8, R/8] for images [B, 3, R, R] in [0, 1]."""
        return self.trunk(images * 2 - 1)

    def heads(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(prompt logits [B, P], view logits [B, V]) from the trunk's output."""
        h = self.hidden(features)
        return self.prompt_head(h), self.view_head(h)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.features(images))


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image [B, C, H, W] with its own sigma [B] (pixels; 0 = unchanged), 3x3
    taps (enough below sigma ~1), edges repeated."""
    b, c, h, w = images.shape
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=images.device)
    s = sigma.to(images).clamp_min(1e-6)[:, None]
    taps = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    taps = taps / taps.sum(-1, keepdim=True)  # [B, 3]
    kernel = (taps[:, :, None] * taps[:, None, :]).repeat_interleave(c, 0)[:, None]
    padded = F.pad(images.reshape(1, b * c, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel, groups=b * c).reshape(b, c, h, w)


def augment(images: Tensor, cfg: JudgeConfig, generator: torch.Generator) -> Tensor:
    """Random integer shifts (edges repeated), blur, gain and pixel noise: [B, 3, R, R] in
    [0, 1]."""
    b, _, h, w = images.shape
    shift = torch.randint(-cfg.shift_px, cfg.shift_px + 1, (b, 2), generator=generator)
    sigma = torch.rand(b, generator=generator) * cfg.blur_sigma_max
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * cfg.gain_jitter
    noise = torch.randn(images.shape, generator=generator) * cfg.noise_std
    if cfg.shift_px:
        # Translation by whole pixels as a nearest-neighbour resample (align_corners=False:
        # one pixel is 2 / size in normalised coordinates).
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2] = shift[:, 0] * 2 / w
        theta[:, 1, 2] = shift[:, 1] * 2 / h
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid.to(images), mode="nearest", padding_mode="border", align_corners=False
        )
    if cfg.blur_sigma_max > 0:
        images = gaussian_blur(images, sigma)
    return (images * gain.to(images) + noise.to(images)).clamp(0, 1)


class Judge:
    """A trained judge: ``predict``, ``r_precision`` and ``multi_face_score`` on renders."""

    def __init__(
        self,
        net: JudgeNet,
        prompts: Sequence[str],
        view_names: Sequence[str],
        resolution: int,
        metadata: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.net = net.requires_grad_(False).eval().to(self.device)
        self.prompts = list(prompts)
        self.view_names = list(view_names)
        self.resolution = resolution
        self.metadata = dict(metadata or {})

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> Judge:
        """Load judge weights; ``None`` loads the judge shipped with ssd3d."""
        if path is None:
            path = shipped_judge_path()
            if not path.is_file():
                raise SSD3DError(
                    f"the shipped ToyWorld judge is missing ({path}); train one with "
                    "`ssd3d toyworld train-classifier DATASET --out DIR` and copy "
                    f"DIR/{JUDGE_FILENAME} there, or pass its path"
                )
        state, meta = read_safetensors(path, "ToyWorld judge weights")
        if meta.get("format") != JUDGE_FORMAT:
            raise SSD3DError(f"{path} is not an ssd3d ToyWorld judge file")
        if int(meta["format_version"]) > JUDGE_FORMAT_VERSION:
            raise SSD3DError(f"judge {path} is format {meta['format_version']}; upgrade ssd3d")
        prompts, views = json.loads(meta["prompts"]), json.loads(meta["view_names"])
        resolution = int(meta["resolution"])
        net = JudgeNet(len(prompts), len(views), resolution, int(meta["width"]))
        net.load_state_dict(state)
        return cls(net, prompts, views, resolution, meta, device)

    def save(self, path: str | Path, extra: dict[str, str] | None = None) -> Path:
        """Write the weights (safetensors) and what is needed to rebuild the judge."""
        meta = {
            **self.metadata,
            **(extra or {}),
            "format": JUDGE_FORMAT,
            "format_version": str(JUDGE_FORMAT_VERSION),
            "prompts": json.dumps(self.prompts),
            "view_names": json.dumps(self.view_names),
            "resolution": str(self.resolution),
            "width": str(self.net.trunk[0].out_channels),
        }
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return write_safetensors_atomic(path, state, meta)

    def prompt_index(self, prompt: str) -> int:
        """Index of a base prompt (a view suffix is ignored); SSD3DError if unknown."""
        words = split_words(prompt)
        if len(words) >= 2 and words[-1] == "view" and words[-2] in self.view_names:
            words = words[:-2]
        known = [" ".join(split_words(p)) for p in self.prompts]
        if " ".join(words) not in known:
            raise SSD3DError(f"the judge does not know {prompt!r}; it knows {self.prompts}")
        return known.index(" ".join(words))

    def _resize(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"judge expects images [B, 3, H, W]; got {tuple(images.shape)}")
        size = (self.resolution, self.resolution)
        if tuple(images.shape[-2:]) != size:
            shrink = images.shape[-1] > self.resolution
            images = F.interpolate(
                images, size=size, mode="bilinear", align_corners=False, antialias=shrink
            )
        return images

    @torch.no_grad()
    def predict(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] in [0, 1] -> (prompt_probs [B, P], view_probs [B, V])."""
        x = self._resize(images.to(self.device, torch.float32)).clamp(0, 1)
        prompt_logits, view_logits = self.net(x)
        return prompt_logits.softmax(-1).cpu(), view_logits.softmax(-1).cpu()

    def r_precision(self, images: Tensor, prompt_index: int | str | Tensor) -> float:
        """Fraction of views [B, 3, H, W] whose top-1 prompt is ``prompt_index`` (an index,
        a prompt, or one index per view [B])."""
        if isinstance(prompt_index, str):
            prompt_index = self.prompt_index(prompt_index)
        target = torch.as_tensor(prompt_index, dtype=torch.int64).expand(images.shape[0])
        prompt_probs, _ = self.predict(images)
        return float((prompt_probs.argmax(-1) == target).float().mean())

    def view_confusion(self, images: Tensor, true_view_labels: Tensor) -> Tensor:
        """Counts [V, V] of (true label, predicted label) over views [B, 3, H, W] with true
        labels [B] (indices into ``view_names``): row = true, column = predicted."""
        target = torch.as_tensor(true_view_labels, dtype=torch.int64).reshape(-1)
        if target.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {target.shape[0]} view labels")
        _, view_probs = self.predict(images)
        v = len(self.view_names)
        pairs = target * v + view_probs.argmax(-1)
        return torch.bincount(pairs, minlength=v * v).reshape(v, v)

    def multi_face_score(self, images: Tensor, true_view_labels: Tensor) -> float:
        """Balanced accuracy of the judged view labels of views [B, 3, H, W] against the
        true ones [B]: ``balanced_accuracy(view_confusion(...))``. 1 = every view looks
        like what its camera sees; any constant answer scores 1 / (labels present)."""
        return balanced_accuracy(self.view_confusion(images, true_view_labels))


def balanced_accuracy(confusion: Tensor) -> float:
    """Mean over the true labels present (rows with a count) of the fraction of their views
    predicted right, from a confusion matrix [V, V] (row = true, column = predicted)."""
    totals = confusion.sum(-1)
    present = totals > 0
    if not bool(present.any()):
        raise ValueError("balanced accuracy of no views")
    recall = confusion.diagonal()[present].double() / totals[present].double()
    return float(recall.mean())


def view_trained(prompts: Sequence[str], view_shapes: str = "distinct") -> Tensor:
    """Which prompts' renders train the view head [P] bool (``JudgeConfig.view_shapes``)."""
    if view_shapes == "all":
        return torch.ones(len(prompts), dtype=torch.bool)

    def distinct(prompt: str) -> bool:
        try:
            return parse_prompt(prompt).shape in VIEW_DISTINCT_SHAPES
        except SSD3DError:  # not a ToyWorld prompt (a synthetic world): its views count
            return True

    return torch.tensor([distinct(p) for p in prompts], dtype=torch.bool)


@dataclass(frozen=True)
class JudgeResult:
    """Where the judge went and how it scores on held-out renders."""

    path: Path
    val_prompt_accuracy: float  # NaN when val_fraction = 0
    val_view_accuracy: float  # over the held-out renders of the view-trained prompts
    losses: list[tuple[int, float]]  # (step, mean loss since the previous entry)
    wall_time_s: float


def held_out_accuracy(
    judge: Judge, dataset: ToyDataset, view_mask: Tensor | None = None, batch: int = 512
) -> tuple[float, float]:
    """(prompt accuracy over every render, view accuracy over the renders whose prompt is
    in ``view_mask`` [P] bool, default all); NaN where there are none."""
    if view_mask is None:
        view_mask = torch.ones(len(dataset.prompts), dtype=torch.bool)
    hits_p = hits_v = n_v = 0
    for start in range(0, len(dataset), batch):
        sl = slice(start, start + batch)
        prompt_probs, view_probs = judge.predict(dataset.images_float(sl))
        hits_p += int((prompt_probs.argmax(-1) == dataset.labels[sl]).sum())
        keep = view_mask[dataset.labels[sl]]
        hits_v += int((view_probs.argmax(-1) == dataset.view_labels[sl])[keep].sum())
        n_v += int(keep.sum())
    nan = float("nan")
    return (hits_p / len(dataset) if len(dataset) else nan), (hits_v / n_v if n_v else nan)


def train_judge(
    dataset_path: str | Path,
    out_dir: str | Path,
    config: JudgeConfig | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    init: str | Path | None = None,
) -> JudgeResult:
    """Train the judge on ground-truth renders; write ``out_dir/judge.safetensors``.

    ``init``: a judge file to start from instead of a random initialisation (fine-tuning:
    same prompts, views, resolution and width as this dataset and config).

    Cross-entropy on both heads, summed; the view head's only over the renders of the
    prompts ``cfg.view_shapes`` selects. A ``val_fraction`` of the renders (a seeded random
    split) is held out and the accuracies on it are stored in the file's metadata.
    """
    cfg = config or JudgeConfig()
    dataset = ToyDataset.load(dataset_path)
    if dataset.resolution % 8:
        raise SSD3DError(f"judge needs a resolution divisible by 8; got {dataset.resolution}")
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(dataset), generator=generator)
    n_val = int(round(cfg.val_fraction * len(dataset)))
    train, val = dataset.subset(order[n_val:]), dataset.subset(order[:n_val])
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = JudgeNet(len(dataset.prompts), len(dataset.view_names), dataset.resolution, cfg.width)
    if init is not None:
        initial = Judge.load(init)
        mine = (dataset.prompts, dataset.view_names, dataset.resolution, cfg.width)
        theirs = (
            initial.prompts,
            initial.view_names,
            initial.resolution,
            initial.net.trunk[0].out_channels,
        )
        if theirs != mine:
            raise SSD3DError(
                f"judge {init} (prompts, views, resolution, width) does not match this "
                "dataset and config; fine-tune on the dataset it was trained on"
            )
        net.load_state_dict(initial.net.state_dict())
    elif cfg.freeze_trunk:
        raise SSD3DError("judge 'freeze_trunk' needs a judge to start from (init)")
    net.to(device).train()
    if cfg.freeze_trunk:
        net.trunk.requires_grad_(False).eval()
    view_mask = view_trained(dataset.prompts, cfg.view_shapes)
    if not bool(view_mask.any()):
        raise SSD3DError(f"no prompt of {dataset_path} has views the judge can learn")
    trained = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Cosine decay to zero: the last steps settle instead of bouncing at full step size.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)

    from tqdm.auto import tqdm

    before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start_time, losses, window = time.perf_counter(), [], []
    log_every = max(1, cfg.steps // 50)
    try:
        for step in tqdm(
            range(1, cfg.steps + 1), desc="train-classifier", unit="step", disable=not progress
        ):
            idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
            images = augment(train.images_float(idx), cfg, generator).to(device)
            if cfg.freeze_trunk:
                with torch.no_grad():
                    features = net.features(images)
                prompt_logits, view_logits = net.heads(features)
            else:
                prompt_logits, view_logits = net(images)
            labels = train.labels[idx]
            # Per-render view losses, summed over the view-trained ones and divided by the
            # batch (not by their count): every render weighs the same whatever the draw.
            view_losses = F.cross_entropy(
                view_logits, train.view_labels[idx].to(device), reduction="none"
            )
            keep = view_mask[labels].to(view_losses)
            loss = (
                F.cross_entropy(prompt_logits, labels.to(device))
                + (view_losses * keep).sum() / cfg.batch_size
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            window.append(loss.item())
            if step % log_every == 0 or step == cfg.steps:
                losses.append((step, sum(window) / len(window)))
                window = []
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - start_time

    judge = Judge(net, dataset.prompts, dataset.view_names, dataset.resolution, device=device)
    val_prompt, val_view = held_out_accuracy(judge, val, view_mask)
    path = judge.save(
        Path(out_dir) / JUDGE_FILENAME,
        extra={
            "train_config": json.dumps(to_dict(cfg)),
            "steps": str(cfg.steps),
            "seed": str(cfg.seed),
            "wall_time_s": f"{wall:.1f}",
            "val_prompt_accuracy": f"{val_prompt:.4f}",
            "val_view_accuracy": f"{val_view:.4f}",
            "val_view_prompts": json.dumps(
                [p for p, m in zip(dataset.prompts, view_mask.tolist(), strict=True) if m]
            ),
            "val_size": str(len(val)),
            "dataset_size": str(len(dataset)),
            "created_by": "ssd3d toyworld train-classifier",
            **({"init": Path(init).name} if init is not None else {}),
            "device": str(device),
        },
    )
    return JudgeResult(path, val_prompt, val_view, losses, wall)
