"""The shipped toy prior's network: a small text-conditional pixel UNet, in plain PyTorch.

Stable Diffusion in miniature, without the VAE: the UNet predicts the noise eps of a
32x32 RGB image x_t in [-1, 1] at integer timestep t, and attends (cross-attention) to the
embeddings of the prompt's tokens. The tokenizer is a closed word list, the dataset's
prompt words plus the view words; the empty prompt "" (all padding) is the unconditional
input that classifier-free guidance needs.

Written in plain PyTorch rather than with diffusers' ``UNet2DConditionModel``: diffusers is
the optional ``sd`` extra, while the toy prior is the default that must run on any CPU
install; and at the same widths (24/48/96/96) diffusers' block has 3.8M parameters and
took 4.5 s of one core per training step of batch 64 at 32x32 (a self-attention + MLP
transformer at every cross-attention site, two ResBlocks per decoder level), against 1.8M
and 1.1 s here (diffusers 0.42, torch 2.13, measured on the 2-core development machine).

Shapes: x [B, 3, H, W], t [B] int64, tokens [B, L] int64 (L = ``PromptTokenizer.max_length``),
token embeddings [B, L, E].

Longer than the project's 400-line mark: the network, its tokenizer, its noise schedule and
its weights file are read and written together (a file holds all four).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd3d.config import from_dict, to_dict
from ssd3d.errors import SSD3DError
from ssd3d.priors.base import (
    NUM_TRAIN_TIMESTEPS,
    SD_BETA_END,
    SD_BETA_START,
    BetaSchedule,
    make_alphas_cumprod,
)
from ssd3d.priors.toy import ToyPrior

# Words of a prompt: letters, digits, "_" and "-" (ToyWorld shape names may hold a hyphen);
# punctuation such as the comma before a view suffix carries no information and is dropped.
_WORD = re.compile(r"[\w-]+")
# Sinusoid features of the timestep before the time MLP (32 frequencies from 1 to 1/10000).
TIME_FEATURES = 64
# Token id 0 is padding; a prompt of only padding is the empty (unconditional) prompt.
PAD_ID = 0


def split_words(prompt: str) -> list[str]:
    """ "A red cube, front view" -> ["a", "red", "cube", "front", "view"]."""
    return _WORD.findall(prompt.lower())


class PromptTokenizer:
    """Closed-vocabulary word tokenizer: prompt -> token ids [L], padded with ``PAD_ID``.

    ``vocabulary`` lists the words in id order after the padding token (id 0). A prompt is
    accepted when it is "", one of ``prompts`` or one of them with a ", {view} view" suffix
    for a view in ``view_names``; anything else raises ``SSD3DError`` listing the known
    prompts (a learned prior has seen nothing else, so it could only answer noise).
    """

    def __init__(
        self,
        prompts: Sequence[str],
        view_names: Sequence[str],
        vocabulary: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> None:
        self.prompts = [" ".join(split_words(p)) for p in prompts]
        self.view_names = list(view_names)
        words = sorted({w for p in self.prompts for w in p.split()} | {"view", *self.view_names})
        self.vocabulary = list(vocabulary) if vocabulary is not None else words
        missing = [w for w in words if w not in self.vocabulary]
        if missing:
            raise SSD3DError(f"tokenizer vocabulary lacks the prompt words {missing}")
        self._ids = {w: i + 1 for i, w in enumerate(self.vocabulary)}
        # Longest prompt plus the two words of a view suffix.
        needed = max((len(p.split()) for p in self.prompts), default=0) + 2
        self.max_length = max_length if max_length is not None else needed
        if self.max_length < needed:
            raise SSD3DError(f"tokenizer max_length {self.max_length} < {needed} words needed")
        self._known = set(self.prompts) | {
            f"{p} {v} view" for p in self.prompts for v in self.view_names
        }

    @property
    def vocab_size(self) -> int:
        """Number of token ids, padding included."""
        return len(self.vocabulary) + 1

    def with_view(self, prompt: str, view: str) -> str:
        """ "a red cube" + "front" -> "a red cube, front view" (the ToyWorld suffix form)."""
        return f"{prompt}, {view} view"

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """Token ids [N, L] int64; "" is a row of padding (the unconditional input)."""
        if isinstance(prompts, str):
            raise TypeError("pass a list of prompts, not one string")
        rows = torch.full((len(prompts), self.max_length), PAD_ID, dtype=torch.int64)
        for i, prompt in enumerate(prompts):
            words = split_words(prompt)
            if words and " ".join(words) not in self._known:
                raise SSD3DError(
                    f"unknown prompt {prompt!r} for this toy prior; it knows "
                    f"{', '.join(repr(p) for p in self.prompts)} (optionally with "
                    f"', {{view}} view', view in {'|'.join(self.view_names)}) and '' "
                    f"(unconditional)"
                )
            rows[i, : len(words)] = torch.tensor([self._ids[w] for w in words])
        return rows


@dataclass(frozen=True)
class UNetConfig:
    """Width and depth of the toy UNet.

    Defaults: 1.8M parameters, widths 24/48/96/96 at 32/16/8/4 pixels, ~1.1 s of one core
    per training step of batch 64 at 32x32 (so ~0.55 s on two idle cores), chosen by
    measurement on the 2-core development machine against 3-level variants (2.0M at
    32/64/128: ~1.5 s of one core); convolutions are 80% of the time.
    """

    # Input/output channels (RGB pixels).
    in_channels: int = 3
    # Channels at full resolution; level i has base_channels * channel_mult[i].
    base_channels: int = 24
    # One entry per resolution level (32 -> 16 -> 8 -> 4 for a 32x32 input); a 4x4
    # bottleneck sees the whole object, and the cheap low levels carry most of the weights.
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    # Levels (indices into channel_mult) whose blocks cross-attend to the prompt's tokens;
    # the bottleneck always does. Full resolution is left out: attention there costs the most.
    attention_levels: tuple[int, ...] = (1, 2, 3)
    # Width of the token embeddings the UNet attends to.
    token_dim: int = 64
    # Attention heads in every cross-attention block.
    num_heads: int = 4
    # GroupNorm groups (must divide every level's width).
    norm_groups: int = 8
    # Vocabulary size and prompt length; set from the tokenizer when the prior is built.
    vocab_size: int = 16
    max_length: int = 8


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps (DDPM / Transformer): [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time (+ pooled prompt) embedding added between."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # Zero-initialised last conv: every block starts as the identity (improved DDPM).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class CrossAttention(nn.Module):
    """Pixels [B, C, H, W] attend to token embeddings [B, L, E]; residual, zero-initialised."""

    def __init__(self, channels: int, token_dim: int, num_heads: int, groups: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Linear(channels, channels, bias=False)
        self.kv = nn.Linear(token_dim, 2 * channels, bias=False)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # [B, HW, C]
        k, v = self.kv(tokens).chunk(2, dim=-1)  # [B, L, C] each

        def heads(z: Tensor) -> Tensor:
            return z.unflatten(-1, (self.num_heads, c // self.num_heads)).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # [B, nh, HW, C/nh]
        a = self.out(a.transpose(1, 2).flatten(2))  # [B, HW, C]
        return x + a.transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    """One ResBlock, optionally followed by cross-attention."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig, attend: bool) -> None:
        super().__init__()
        emb_dim = 4 * cfg.base_channels
        self.res = ResBlock(c_in, c_out, emb_dim, cfg.norm_groups)
        self.attn = (
            CrossAttention(c_out, cfg.token_dim, cfg.num_heads, cfg.norm_groups) if attend else None
        )

    def forward(self, x: Tensor, emb: Tensor, tokens: Tensor) -> Tensor:
        x = self.res(x, emb)
        return self.attn(x, tokens) if self.attn is not None else x


class ToyUNet(nn.Module):
    """eps_theta(x_t, t, tokens): [B, 3, H, W], [B], [B, L] -> [B, 3, H, W].

    Encoder: per level a ResBlock (+ cross-attention), then a stride-2 conv; bottleneck:
    ResBlock + cross-attention + ResBlock; decoder mirrors the encoder on the skip
    concatenation, upsampling by nearest-neighbour + conv. H and W must be divisible by
    2 ** (len(channel_mult) - 1). The prompt enters twice: its token embeddings through
    cross-attention, and their mean added to the time embedding (Imagen's pooled text
    embedding), which gives a small network a direct path from colour/shape words to
    every ResBlock.
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base, mult = cfg.base_channels, cfg.channel_mult
        emb_dim = 4 * base
        widths = [base * m for m in mult]
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.token_dim)
        self.position_embedding = nn.Parameter(torch.randn(cfg.max_length, cfg.token_dim) * 0.02)
        self.token_norm = nn.LayerNorm(cfg.token_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(TIME_FEATURES, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.pooled_proj = nn.Linear(cfg.token_dim, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, base, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = base
        for i, w in enumerate(widths):
            self.down.append(Level(c, w, cfg, i in cfg.attention_levels))
            c = w
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, 2, 1))
        self.mid1 = Level(c, c, cfg, attend=True)
        self.mid2 = Level(c, c, cfg, attend=False)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w = widths[i]
            self.up.append(Level(c + w, w, cfg, i in cfg.attention_levels))
            c = w
            self.upsample.append(
                nn.Conv2d(c, widths[i - 1], 3, padding=1) if i > 0 else nn.Identity()
            )
            if i > 0:
                c = widths[i - 1]
        self.norm_out = nn.GroupNorm(cfg.norm_groups, c)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """Token ids [B, L] -> embeddings [B, L, E]."""
        return self.token_norm(self.token_embedding(tokens) + self.position_embedding)

    def forward(
        self, x: Tensor, t: Tensor, tokens: Tensor, class_emb: Tensor | None = None
    ) -> Tensor:
        """``class_emb`` [B, 4 * base_channels], optional, is added to the timestep
        embedding (diffusers' class embedding): VSD's LoRA copy feeds it the camera."""
        levels = len(self.cfg.channel_mult)
        if x.shape[-1] % 2 ** (levels - 1) or x.shape[-2] % 2 ** (levels - 1):
            raise ValueError(f"image size {tuple(x.shape[-2:])} not divisible by 2^{levels - 1}")
        ctx = self.embed_tokens(tokens)
        emb = self.time_mlp(timestep_embedding(t, TIME_FEATURES))
        emb = emb + self.pooled_proj(ctx.mean(dim=1))
        if class_emb is not None:
            emb = emb + class_emb
        h = self.conv_in(x)
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            h = level(h, emb, ctx)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid1(h, emb, ctx), emb, ctx)
        for level, up in zip(self.up, self.upsample, strict=True):
            h = level(torch.cat([h, skips.pop()], dim=1), emb, ctx)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- noise schedule and the prior file ------------------------------------------------------


@dataclass(frozen=True)
class NoiseSchedule:
    """The DDPM forward process the prior is trained with (stored in the prior file)."""

    # Stable Diffusion's DDPMScheduler: 1000 steps of scaled_linear betas 0.00085 -> 0.012,
    # so that the toy prior's t and alpha_bar mean what they mean for SD in the estimators.
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
    beta_start: float = SD_BETA_START
    beta_end: float = SD_BETA_END
    beta_schedule: BetaSchedule = "scaled_linear"

    def alphas_cumprod(self) -> Tensor:
        """alpha_bar[t], [T] float64."""
        return make_alphas_cumprod(
            self.num_train_timesteps, self.beta_start, self.beta_end, self.beta_schedule
        )


PRIOR_FORMAT = "ssd3d-toy-prior"
PRIOR_FORMAT_VERSION = 1
_PRIOR_KEYS = (
    "format",
    "format_version",
    "unet",
    "schedule",
    "prompts",
    "view_names",
    "vocabulary",
    "max_length",
    "resolution",
)


class PriorFile(NamedTuple):
    """What a toy prior file holds: the network (EMA weights), its tokenizer and schedule."""

    unet: ToyUNet
    tokenizer: PromptTokenizer
    schedule: NoiseSchedule
    resolution: int  # side of the square images the UNet was trained on
    metadata: dict[str, str]  # everything stored, training notes included


def save_prior_file(
    path: str | Path,
    unet: ToyUNet,
    tokenizer: PromptTokenizer,
    schedule: NoiseSchedule,
    resolution: int,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write ``unet``'s weights (safetensors, float32) with everything needed to rebuild it."""
    from ssd3d.toyworld.dataset_format import write_safetensors_atomic

    meta = {
        "format": PRIOR_FORMAT,
        "format_version": str(PRIOR_FORMAT_VERSION),
        "unet": json.dumps(to_dict(unet.cfg)),
        "schedule": json.dumps(to_dict(schedule)),
        "prompts": json.dumps(tokenizer.prompts),
        "view_names": json.dumps(tokenizer.view_names),
        "vocabulary": json.dumps(tokenizer.vocabulary),
        "max_length": str(tokenizer.max_length),
        "resolution": str(resolution),
    }
    clash = set(meta) & set(extra or {})
    if clash:
        raise ValueError(f"extra metadata may not override {sorted(clash)}")
    meta.update(extra or {})
    state = {k: v.detach().float().cpu() for k, v in unet.state_dict().items()}
    return write_safetensors_atomic(path, state, meta)


def load_prior_file(path: str | Path, device: str | torch.device = "cpu") -> PriorFile:
    """Rebuild the UNet (eval mode, frozen) and tokenizer from a file ``save_prior_file`` wrote."""
    from ssd3d.toyworld.dataset_format import read_safetensors

    state, meta = read_safetensors(path, "toy prior weights")
    missing = [k for k in _PRIOR_KEYS if k not in meta]
    if missing or meta.get("format") != PRIOR_FORMAT:
        raise SSD3DError(
            f"{path} is not an ssd3d toy prior file (missing metadata: {', '.join(missing)})"
        )
    if int(meta["format_version"]) > PRIOR_FORMAT_VERSION:
        raise SSD3DError(f"toy prior {path} is format {meta['format_version']}; upgrade ssd3d")
    cfg = from_dict(UNetConfig, json.loads(meta["unet"]))
    schedule = from_dict(NoiseSchedule, json.loads(meta["schedule"]))
    tokenizer = PromptTokenizer(
        json.loads(meta["prompts"]),
        json.loads(meta["view_names"]),
        vocabulary=json.loads(meta["vocabulary"]),
        max_length=int(meta["max_length"]),
    )
    unet = ToyUNet(cfg)
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SSD3DError(f"toy prior {path}: weights do not fit its config ({first})") from None
    unet.requires_grad_(False).eval().to(device)
    return PriorFile(unet, tokenizer, schedule, int(meta["resolution"]), meta)


SHIPPED_PRIOR = "toy_prior.safetensors"


def shipped_prior_path() -> Path:
    """Where the shipped weights live inside the installed package."""
    return Path(str(resources.files("ssd3d") / "models" / "assets" / SHIPPED_PRIOR))


def load_toy_prior(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The ``DiffusionPrior`` adapter of a toy prior file; ``None`` loads the shipped one."""
    if path is None:
        path = shipped_prior_path()
        if not path.is_file():
            raise SSD3DError(
                f"the shipped toy prior is missing ({path}); train one with "
                "`ssd3d toyworld train-prior DATASET --out DIR` and copy "
                f"DIR/{SHIPPED_PRIOR} there, or pass its path"
            )
    loaded = load_prior_file(path, device)
    return ToyPrior(
        loaded.unet,
        loaded.tokenizer,
        loaded.schedule.alphas_cumprod(),
        loaded.resolution,
        loaded.metadata,
        device,
    )
