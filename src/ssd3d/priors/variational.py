"""The particles' own score for VSD: a trainable copy of a prior, or a fitted closed form.

VSD (``ssd3d.estimators.vsd``) needs ``eps_q(x_t; y, c, t)``, the noise prediction of the
distribution q of the scene's renders, at the same x_t as the prior's. Every model here
offers the same ``ParticleScore`` protocol, and the training loop drives it the same way:
``predict`` on this step's x_t, the gradient, then ``update`` on this step's detached x0.

- ``LoraScore`` (toy UNet, Stable Diffusion): a copy of the frozen prior's noise predictor
  with peft LoRA adapters and a camera embedding (the flattened camera-to-world matrix
  through a two-layer MLP added to the timestep embedding, as threestudio's
  ``stable-diffusion-vsd-guidance`` passes its extrinsics through a ``TimestepEmbedding``
  class embedding). The adapters' up-projections and the embedding's last layer start at
  zero, so a fresh copy predicts exactly what the prior predicts. ``update`` takes one
  AdamW step on the denoising loss ``||eps_q(x_t; y, c, t) - eps||^2`` of the renders at
  t ~ U[0, T), with the camera dropped (zeroed) for 10% of them (threestudio's
  ``lora_cfg_training``), t, noise and the drop drawn from the run's generator.
- ``FittedGaussianScore`` (the exact priors, where no network exists to adapt): q is a
  diagonal Gaussian N(mu, diag(v)) over x0 whose moments are exponential moving averages
  of the renders' (momentum 1 = the current batch alone, the simulations' choice, where
  the batch holds every particle). Its noised eps is exact:
  ``x_t ~ N(sqrt(a) mu, a v + 1 - a)`` so ``eps_q = sqrt(1 - a) (x_t - sqrt(a) mu) / (a v + 1 - a)``.
  It ignores the camera and the prompt: one Gaussian for all views.

State (``state_dict``: tensors only) is what a checkpoint must hold for an exact resume:
the adapters' and the embedding's weights and AdamW's moments, or the Gaussian's moments.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import add_noise

# Values of threestudio's flattened 4x4 camera-to-world matrix ("extrinsics").
CAMERA_DIM = 16


@dataclass(frozen=True)
class ParticleScoreConfig:
    """Settings of VSD's particle score (the ``particle_score:`` section of a run)."""

    # LoRA rank: diffusers' LoRAAttnProcessor default, which threestudio's VSD guidance uses.
    rank: int = 4
    # lora_alpha = rank: the adapters' output is scaled by alpha / rank = 1.
    alpha: float = 4.0
    # ProlificDreamer's (threestudio configs/prolificdreamer.yaml) guidance lr 1e-4, AdamW
    # with the run's betas (0.9, 0.99); weight decay is AdamW's default 0.01.
    lr: float = 1e-4
    weight_decay: float = 0.01
    # Fraction of training renders whose camera is zeroed (threestudio: 0.1).
    camera_dropout: float = 0.1
    # Condition the copy on the camera (extrinsics); off: the prompt alone.
    camera: bool = True
    # FittedGaussianScore (exact priors): weight of the current renders in the moments.
    momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.rank < 1 or not self.alpha > 0 or not self.lr >= 0 or not self.weight_decay >= 0:
            raise SSD3DError(
                "particle_score: rank must be >= 1, alpha > 0, lr and weight_decay >= 0; got "
                f"{self.rank}, {self.alpha}, {self.lr}, {self.weight_decay}"
            )
        if not 0 <= self.camera_dropout <= 1 or not 0 < self.momentum <= 1:
            raise SSD3DError(
                "particle_score: camera_dropout must lie in [0, 1] and momentum in (0, 1]; got "
                f"{self.camera_dropout}, {self.momentum}"
            )


class ParticleScore(Protocol):
    """eps of the particles' own noised distribution, trained or fitted as the run goes."""

    def predict(
        self, x0: Tensor, noise: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None
    ) -> Tensor:
        """eps_q at x_t = sqrt(a) x0 + sqrt(1 - a) noise, for x0 [B, ...], t [B], the prompt's
        rows cond [B, ...] and cameras [B, 16] (None: no camera); without autograd."""
        ...

    def update(
        self, x0: Tensor, cond: Tensor, camera: Tensor | None, generator: torch.Generator
    ) -> float:
        """Fit one step further to the detached x0 [B, ...]; returns the step's loss."""
        ...

    def num_parameters(self) -> int:
        """Trainable (or fitted) numbers."""
        ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


# --- the fitted Gaussian (exact priors, simulations) ------------------------------------------


def gaussian_eps(
    x0: Tensor, noise: Tensor, alpha_bar: Tensor, mean: Tensor, second: Tensor
) -> Tensor:
    """Exact eps of N(mean, diag(second - mean^2)) over x0 at x_t = sqrt(a) x0 + sqrt(1 - a)
    noise, alpha_bar [B]: ``sqrt(1 - a) (x_t - sqrt(a) mean) / (a var + 1 - a)``, in x0's dtype."""
    var = (second - mean * mean).clamp_min(0)
    a = alpha_bar.to(x0.device, torch.float64).reshape(-1, *([1] * (x0.dim() - 1)))
    x_t = add_noise(x0.detach().to(torch.float64), noise.to(torch.float64), a.flatten())
    eps = (1 - a).sqrt() * (x_t - a.sqrt() * mean.to(x_t)) / (a * var.to(x_t) + 1 - a)
    return eps.to(x0.dtype)


class FittedGaussianScore:
    """q = N(mu, diag(v)) over x0, its moments a moving average of the particles' (see module)."""

    def __init__(self, alphas_cumprod: Tensor, momentum: float = 1.0) -> None:
        if not 0 < momentum <= 1:
            raise SSD3DError(f"momentum must lie in (0, 1]; got {momentum}")
        self.alphas_cumprod = alphas_cumprod
        self.momentum = momentum
        self.mean: Tensor | None = None  # E[x0], x0's shape without the batch
        self.second: Tensor | None = None  # E[x0^2]

    def moments(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, second moment) after blending in the batch x0 [B, ...] (float64)."""
        x = x0.detach().to(torch.float64)
        mean, second = x.mean(dim=0), (x * x).mean(dim=0)
        if self.mean is None or self.second is None:
            return mean, second
        m = self.momentum
        return (1 - m) * self.mean.to(x) + m * mean, (1 - m) * self.second.to(x) + m * second

    def predict(
        self, x0: Tensor, noise: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None
    ) -> Tensor:
        """Exact eps of the fitted Gaussian at x_t; the moments include this batch."""
        mean, second = self.moments(x0)
        return gaussian_eps(
            x0, noise, self.alphas_cumprod[t.to(self.alphas_cumprod.device)], mean, second
        )

    def update(
        self, x0: Tensor, cond: Tensor, camera: Tensor | None, generator: torch.Generator
    ) -> float:
        self.mean, self.second = self.moments(x0)
        return 0.0

    def num_parameters(self) -> int:
        return 0 if self.mean is None else 2 * self.mean.numel()

    def state_dict(self) -> dict[str, Tensor]:
        if self.mean is None or self.second is None:
            return {}
        return {"mean": self.mean, "second": self.second}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            self.mean, self.second = state["mean"], state["second"]


# --- LoRA copies of a network -----------------------------------------------------------------


def _require_peft():
    try:
        import peft
    except ImportError:
        raise SSD3DError(
            "VSD's LoRA needs peft: pip install 'ssd3d[sd]' (or pip install peft)"
        ) from None
    return peft


@contextlib.contextmanager
def _seeded(seed: int):
    """torch's global generator seeded for the adapters' random init (peft draws from it),
    and left as it was: a run's adapters are a function of its seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class CameraEmbedding(nn.Module):
    """Camera-to-world [B, 16] -> an offset of the timestep embedding [B, E]; starts at zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(CAMERA_DIM, dim)
        self.linear_2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, camera: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(camera)))


class LoraScore:
    """A LoRA copy of a prior's noise predictor, trained on the renders (see module).

    Subclasses wrap one network family: ``_forward(x_t, t, cond, camera)`` returns eps with
    autograd; the frozen prior's network is copied, never modified.
    """

    network: nn.Module  # the copy, with its adapters (frozen base weights)
    camera_embedding: CameraEmbedding | None

    def __init__(self, alphas_cumprod: Tensor, config: ParticleScoreConfig) -> None:
        self.alphas_cumprod = alphas_cumprod
        self.config = config
        self.optimizer: torch.optim.AdamW | None = None

    def _trainable(self) -> dict[str, nn.Parameter]:
        # The camera embedding may sit inside the copy (SD's class_embedding): listed once.
        own = set() if self.camera_embedding is None else set(self.camera_embedding.parameters())
        params = {
            f"lora.{n}": p
            for n, p in self.network.named_parameters()
            if p.requires_grad and p not in own
        }
        if self.camera_embedding is not None:
            params |= {f"camera.{n}": p for n, p in self.camera_embedding.named_parameters()}
        return params

    def _build_optimizer(self, betas: tuple[float, float], eps: float) -> None:
        self.optimizer = torch.optim.AdamW(
            list(self._trainable().values()),
            lr=self.config.lr,
            betas=betas,
            eps=eps,
            weight_decay=self.config.weight_decay,
        )

    def _forward(self, x_t: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _camera(self, camera: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if self.camera_embedding is None:
            return None
        if camera is None:
            return torch.zeros(batch, CAMERA_DIM, device=device)
        return camera.reshape(batch, CAMERA_DIM).to(device, torch.float32)

    def predict(
        self, x0: Tensor, noise: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None
    ) -> Tensor:
        a = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
        x_t = add_noise(x0.detach(), noise, a)
        with torch.no_grad():
            eps = self._forward(x_t, t, cond, self._camera(camera, x0.shape[0], x0.device))
        return eps.to(x0.dtype)

    def update(
        self, x0: Tensor, cond: Tensor, camera: Tensor | None, generator: torch.Generator
    ) -> float:
        """One AdamW step on the denoising loss of x0, t ~ U[0, T) (all from ``generator``)."""
        assert self.optimizer is not None
        b, device = x0.shape[0], x0.device
        t = torch.randint(0, len(self.alphas_cumprod), (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        keep = torch.rand(b, generator=generator) >= self.config.camera_dropout
        t, noise = t.to(device), noise.to(device)
        camera = self._camera(camera, b, device)
        if camera is not None:
            camera = camera * keep.to(device, camera.dtype)[:, None]
        a = self.alphas_cumprod.to(device)[t].to(x0.dtype)
        x_t = add_noise(x0.detach(), noise, a)
        eps = self._forward(x_t, t, cond, camera)
        loss = F.mse_loss(eps.float(), noise.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._trainable().values())

    def state_dict(self) -> dict[str, Tensor]:
        assert self.optimizer is not None
        out = {name: p.detach() for name, p in self._trainable().items()}
        for index, per_param in self.optimizer.state_dict()["state"].items():
            for key, value in per_param.items():
                out[f"adamw.{index}.{key}"] = torch.as_tensor(value)
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        assert self.optimizer is not None
        params = self._trainable()
        missing = [n for n in params if n not in state]
        if missing:
            raise SSD3DError(f"the particle score's checkpoint lacks {missing[0]}")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])
        moments: dict[int, dict[str, Tensor]] = {}
        for name, value in state.items():
            if name.startswith("adamw."):
                _, index, key = name.split(".", 2)
                moments.setdefault(int(index), {})[key] = value
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": moments, "param_groups": groups})


class ToyLoraScore(LoraScore):
    """LoRA on the toy UNet (``ssd3d.models.unet.ToyUNet``): its convolutions and attention.

    Adapted: every ResBlock's two 3x3 convolutions and every cross-attention's q, kv and
    out projections (peft's Conv2d and Linear LoRA). The camera embedding's output is the
    UNet's ``class_emb``, added to its timestep embedding.
    """

    TARGETS = ("conv1", "conv2", "q", "kv", "out")

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod: Tensor,
        config: ParticleScoreConfig = ParticleScoreConfig(),
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-15,
        seed: int = 0,
    ) -> None:
        super().__init__(alphas_cumprod, config)
        peft = _require_peft()
        network = copy.deepcopy(unet).requires_grad_(False).eval()
        lora = peft.LoraConfig(
            r=config.rank, lora_alpha=config.alpha, target_modules=list(self.TARGETS)
        )
        with _seeded(seed):
            self.network = peft.inject_adapter_in_model(lora, network)
            emb_dim = network.time_mlp[-1].out_features
            camera = CameraEmbedding(emb_dim) if config.camera else None
        device = next(network.parameters()).device
        self.camera_embedding = None if camera is None else camera.to(device)
        self._build_optimizer(betas, eps)

    def _forward(self, x_t: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None) -> Tensor:
        offset = None if camera is None else self.camera_embedding(camera)
        return self.network(x_t.float(), t, cond, class_emb=offset)


class StableDiffusionLoraScore(LoraScore):
    """LoRA on Stable Diffusion's UNet attention (``to_q``, ``to_k``, ``to_v``, ``to_out.0``:
    where threestudio's LoRAAttnProcessor adapts it), via diffusers' ``add_adapter``; the
    camera embedding is the copy's ``class_embedding`` (threestudio's choice). A
    v-prediction checkpoint's output is turned into eps, as the prior does.
    """

    TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

    def __init__(
        self,
        prior,  # StableDiffusionPrior: its unet, dtype and prediction_type
        config: ParticleScoreConfig = ParticleScoreConfig(),
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-15,
        seed: int = 0,
    ) -> None:
        super().__init__(prior.alphas_cumprod, config)
        peft = _require_peft()
        unet = copy.deepcopy(prior.unet).requires_grad_(False).eval()
        lora = peft.LoraConfig(
            r=config.rank, lora_alpha=config.alpha, target_modules=list(self.TARGETS)
        )
        with _seeded(seed):
            unet.add_adapter(lora)
            emb_dim = unet.time_embedding.linear_2.out_features
            camera = CameraEmbedding(emb_dim) if config.camera else None
        # peft keeps the adapters in float32 over a half-precision base (autocast_adapter_dtype).
        self.network = unet
        self.dtype = prior.dtype
        self.prediction_type = prior.prediction_type
        self.camera_embedding = None
        if camera is not None:
            self.camera_embedding = camera.to(prior.device)
            # The UNet adds class_embedding(class_labels) to its timestep embedding.
            unet.class_embedding = self.camera_embedding
        self._build_optimizer(betas, eps)

    def _forward(self, x_t: Tensor, t: Tensor, cond: Tensor, camera: Tensor | None) -> Tensor:
        out = self.network(
            x_t.to(self.dtype),
            t,
            encoder_hidden_states=cond.to(self.dtype),
            class_labels=camera,
            return_dict=False,
        )[0].float()
        if self.prediction_type == "v_prediction":
            a = self.alphas_cumprod.to(x_t.device)[t].float().reshape(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * x_t.float()
        return out
