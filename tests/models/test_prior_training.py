"""The toy prior's network, tokenizer, conditioning draws, training loop and checkpoints.

All training here runs a tiny UNet on a synthetic dataset at 16x16 with one thread
(``threads=1``: the loop sets it and restores it), so it is fast and bit-reproducible.
"""

from __future__ import annotations

import dataclasses
import json
import runpy
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.config import apply_overrides, to_dict
from ssd3d.errors import SSD3DError
from ssd3d.models import train_prior as tp
from ssd3d.models.train_prior import (
    ConditioningSampler,
    TrainPriorConfig,
    ema_decay_at,
    train_prior,
    update_ema,
)
from ssd3d.models.unet import (
    PAD_ID,
    NoiseSchedule,
    PromptTokenizer,
    ToyUNet,
    UNetConfig,
    count_parameters,
    load_prior_file,
)
from ssd3d.toyworld.dataset_format import synthetic_dataset

VIEWS = ["front", "side", "back", "overhead"]
TINY_UNET = UNetConfig(
    base_channels=8, channel_mult=(1, 2), attention_levels=(1,), token_dim=16, norm_groups=4
)
# No warm-up: a test's lr is the lr its few steps run at.
TINY = TrainPriorConfig(
    steps=6,
    batch_size=8,
    warmup_steps=0,
    checkpoint_every=100,
    log_every=1,
    threads=1,
    unet=TINY_UNET,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.safetensors"
    return synthetic_dataset(n_per_prompt=48, resolution=16, seed=0).save(path)


# --- network and tokenizer ----------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32])
def test_unet_maps_images_to_images_and_reads_the_prompt(size: int) -> None:
    torch.manual_seed(0)
    unet = ToyUNet(dataclasses.replace(TINY_UNET, vocab_size=6, max_length=4))
    for p in unet.parameters():  # leave the zero init, so the output depends on everything
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(3, 3, size, size), torch.tensor([0, 500, 999])
    tokens = torch.tensor([[1, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0]])
    out = unet(x, t, tokens)
    assert out.shape == (3, 3, size, size) and out.dtype == torch.float32
    # Each sample's output depends on its own tokens only.
    other = unet(x, t, tokens[[1, 1, 2]])
    assert not torch.allclose(out[0], other[0]) and torch.allclose(out[1:], other[1:], atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        unet(torch.randn(1, 3, 15, 15), t[:1], tokens[:1])


def test_default_unet_fits_the_size_budget() -> None:
    n = count_parameters(ToyUNet(UNetConfig(vocab_size=40, max_length=8)))
    assert 1.0e6 < n < 2.0e6
    assert 4 * n < tp.MAX_PRIOR_BYTES  # float32 weights


def test_tokenizer_known_ids() -> None:
    tok = PromptTokenizer(["a red square", "a blue disc"], VIEWS)
    # Vocabulary: sorted words (prompt words + view words + "view"), ids from 1.
    assert tok.vocabulary == sorted(
        ["a", "red", "square", "blue", "disc", "front", "side", "back", "overhead", "view"]
    )
    assert tok.max_length == 5 and tok.vocab_size == 11
    ids = {w: i + 1 for i, w in enumerate(tok.vocabulary)}
    rows = tok(["a blue disc, back view", "", "  A Red   square "])
    assert rows.dtype == torch.int64 and rows.shape == (3, 5)
    assert rows[0].tolist() == [ids["a"], ids["blue"], ids["disc"], ids["back"], ids["view"]]
    assert rows[1].tolist() == [PAD_ID] * 5
    assert rows[2].tolist() == [ids["a"], ids["red"], ids["square"], PAD_ID, PAD_ID]


@pytest.mark.parametrize("prompt", ["a green square", "a red square, left view", "red square"])
def test_tokenizer_rejects_unknown_prompts(prompt: str) -> None:
    tok = PromptTokenizer(["a red square", "a blue disc"], VIEWS)
    with pytest.raises(SSD3DError, match="it knows 'a red square', 'a blue disc'"):
        tok([prompt])


def test_conditioning_dropout_and_view_rates() -> None:
    prompts = ["a red square", "a blue disc", "a green disc"]
    tok = PromptTokenizer(prompts, VIEWS)
    cfg = TrainPriorConfig(cond_dropout=0.1, view_prompt_fraction=0.5)
    sampler = ConditioningSampler(tok, cfg)
    n = 20000
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(3, (n,), generator=g)
    views = torch.randint(4, (n,), generator=g)
    rows = sampler(labels, views, g)
    null = (rows == PAD_ID).all(dim=1)
    # Binomial rates: 4 standard deviations.
    assert abs(null.float().mean().item() - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5
    kept = ~null
    with_view = (rows[:, 3] != PAD_ID) & kept
    frac = with_view.sum().item() / kept.sum().item()
    assert abs(frac - 0.5) < 4 * (0.25 / kept.sum().item()) ** 0.5
    # Every kept row is its sample's prompt, with its own view when it has one.
    for i in torch.nonzero(kept).flatten()[:300].tolist():
        base = prompts[int(labels[i])]
        text = tok.with_view(base, VIEWS[int(views[i])]) if with_view[i] else base
        assert torch.equal(rows[i], tok([text])[0])


def test_ema_warmup_and_update() -> None:
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(0.91)
    assert ema_decay_at(100000, 0.999) == 0.999
    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    for p, v in ((ema.weight, 1.0), (ema.bias, 1.0), (model.weight, 3.0), (model.bias, -1.0)):
        torch.nn.init.constant_(p, v)
    update_ema(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.full((1, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert torch.allclose(ema.bias, torch.tensor([0.5]))


def test_lr_schedules() -> None:
    constant = TrainPriorConfig(lr=1e-3, steps=100, warmup_steps=10)
    assert tp.lr_at(0, constant) == pytest.approx(1e-4)  # warm-up: 1/10 of the way
    assert tp.lr_at(9, constant) == pytest.approx(1e-3)
    assert {tp.lr_at(s, constant) for s in range(10, 100)} == {1e-3}
    cosine = dataclasses.replace(constant, lr_schedule="cosine")
    after_warmup = [tp.lr_at(s, cosine) for s in range(10, 100)]
    assert after_warmup[0] == pytest.approx(1e-3)
    assert tp.lr_at(55, cosine) == pytest.approx(5e-4)  # half way down at the middle
    assert after_warmup[-1] < 1e-6  # the last step runs at (almost) zero lr
    assert all(a > b for a, b in zip(after_warmup, after_warmup[1:], strict=False))


def test_training_follows_the_schedule(dataset_path: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, lr_schedule="cosine", warmup_steps=2)
    seen: list[float] = []
    real_step = torch.optim.AdamW.step

    def record(opt: torch.optim.AdamW, *args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(opt, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", record)
        train_prior(dataset_path, tmp_path, cfg, progress=False)
    assert seen == pytest.approx([tp.lr_at(s, cfg) for s in range(cfg.steps)])
    assert seen[0] < seen[1] == seen[2] == cfg.lr and seen[-1] < seen[3] < cfg.lr
    # The model card's command names every field that changes the weights, in a form
    # train-prior accepts back, and none that does not (steps, threads, logging).
    script = Path(__file__).parents[2] / "scripts" / "model_card.py"
    changed_fields = runpy.run_path(str(script))["changed_fields"]
    saved = json.loads(load_prior_file(tmp_path / tp.PRIOR_FILENAME).metadata["train_config"])
    fields = changed_fields(saved)
    assert "lr_schedule=cosine" in fields and "unet.channel_mult=[1,2]" in fields
    assert not [f for f in fields if f.split("=")[0] in ("steps", "threads", "log_every")]
    unchanged = ["steps=6", "threads=1", "checkpoint_every=100", "log_every=1"]
    rebuilt = json.loads(
        json.dumps(to_dict(apply_overrides(TrainPriorConfig(), fields + unchanged)))
    )
    for config in (rebuilt, saved):  # set from the dataset's tokenizer, not from the command
        del config["unet"]["vocab_size"], config["unet"]["max_length"]
    assert rebuilt == saved
    # The schedule ends at `steps`: resuming with another step count would bend it.
    with pytest.raises(SSD3DError, match=r"changed config: steps \(6 -> 9\)"):
        train_prior(
            dataset_path, tmp_path, dataclasses.replace(cfg, steps=9), progress=False, resume=True
        )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"steps": 0}, "'steps' must be >= 1"),
        ({"warmup_steps": -1}, "'warmup_steps'"),
        ({"cond_dropout": 1.0}, "'cond_dropout'"),
        ({"min_snr_gamma": -1.0}, "'min_snr_gamma'"),
    ],
)
def test_config_checks(override: dict, message: str) -> None:
    with pytest.raises(SSD3DError, match=message):
        TrainPriorConfig(**override)


def test_min_snr_weighting_damps_only_the_low_noise_steps() -> None:
    def zero_unet(x, t, tokens):  # eps_hat = 0: each sample's loss is mean(noise^2)
        return torch.zeros_like(x)

    alphas = NoiseSchedule().alphas_cumprod().float()
    t = torch.tensor([0, 999])
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x0, tokens = torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, dtype=torch.int64)
    per_sample = noise.square().mean(dim=(1, 2, 3))
    plain = tp.diffusion_loss(zero_unet, x0, tokens, alphas, t, noise)
    assert plain == pytest.approx(float(per_sample.mean()))
    weighted = tp.diffusion_loss(zero_unet, x0, tokens, alphas, t, noise, min_snr_gamma=5.0)
    snr0 = float(alphas[0] / (1 - alphas[0]))  # ~1176: damped to 5 / snr0
    expected = (float(per_sample[0]) * 5.0 / snr0 + float(per_sample[1])) / 2  # SNR(999) < 5
    assert weighted == pytest.approx(expected, rel=1e-5)


# --- training ------------------------------------------------------------------------------


def test_loss_falls_and_the_prior_file_is_complete(dataset_path: Path, tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, steps=60, batch_size=16, lr=2e-3, log_every=10)
    result = train_prior(dataset_path, tmp_path, cfg, progress=False)
    losses = [loss for _, loss in result.losses]
    assert [s for s, _ in result.losses] == [10, 20, 30, 40, 50, 60]
    # Zero-initialised output: eps_hat = 0 at the start, so the loss starts near E[eps^2] = 1.
    assert 0.7 < losses[0] < 1.05
    assert losses[-1] < 0.5 * losses[0]

    prior = load_prior_file(result.prior_path)
    assert prior.resolution == 16
    assert prior.tokenizer.prompts == synthetic_dataset(1, 16).prompts
    meta = prior.metadata
    assert meta["steps"] == "60" and json.loads(meta["losses"])[-1][0] == 60
    assert json.loads(meta["train_config"])["lr"] == 2e-3
    assert result.prior_path.stat().st_size < tp.MAX_PRIOR_BYTES


@pytest.fixture(scope="module")
def straight_run(dataset_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    return train_prior(dataset_path, out, TINY, progress=False).prior_path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_resume_reproduces_the_straight_run(
    dataset_path: Path, straight_run: Path, tmp_path: Path
) -> None:
    half = train_prior(dataset_path, tmp_path, dataclasses.replace(TINY, steps=3), progress=False)
    assert half.steps == 3
    half_weights = _weights(half.prior_path)
    done = train_prior(dataset_path, tmp_path, TINY, progress=False, resume=True)
    assert done.steps == 6
    _assert_same_weights(done.prior_path, straight_run)
    # Three more steps did change the EMA weights: the comparison above is not vacuous.
    done_weights = _weights(done.prior_path)
    assert any(not torch.equal(half_weights[k], v) for k, v in done_weights.items())


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(
    dataset_path: Path, straight_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_update = tp.update_ema
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup or some CI shells

    def update_then_interrupt(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
        real_update(ema, model, decay)
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C arrives during the second step
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(tp, "update_ema", update_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_prior(dataset_path, tmp_path, TINY, progress=False)
    monkeypatch.setattr(tp, "update_ema", real_update)
    ckpt = tmp_path / tp.CHECKPOINT_FILENAME
    from safetensors import safe_open

    with safe_open(ckpt, framework="pt") as f:
        assert f.metadata()["step"] == "2"  # the interrupted step was finished, then saved
    assert signal.getsignal(signal.SIGINT) is handler_before  # training restored it
    done = train_prior(dataset_path, tmp_path, TINY, progress=False, resume=True)
    _assert_same_weights(done.prior_path, straight_run)


def test_resume_guards(dataset_path: Path, tmp_path: Path) -> None:
    with pytest.raises(SSD3DError, match="no checkpoint"):
        train_prior(dataset_path, tmp_path, TINY, progress=False, resume=True)
    train_prior(dataset_path, tmp_path, dataclasses.replace(TINY, steps=1), progress=False)
    with pytest.raises(SSD3DError, match="pass --resume"):
        train_prior(dataset_path, tmp_path, TINY, progress=False)
    with pytest.raises(SSD3DError, match=rf"changed config: lr \({TINY.lr} -> 0.001\)"):
        train_prior(
            dataset_path, tmp_path, dataclasses.replace(TINY, lr=1e-3), progress=False, resume=True
        )
    # A checkpoint written before min_snr_gamma existed resumes with it off, not with it on.
    assert tp._config_changes({"lr": 3e-4}, {"lr": 3e-4, "min_snr_gamma": 0.0}) == []
    older = {"lr": 3e-4, "lr_schedule": "constant", "warmup_steps": 0}
    assert tp._config_changes({"lr": 3e-4}, older) == []
    assert tp._config_changes({"lr": 3e-4}, {"lr": 3e-4, "min_snr_gamma": 5.0}) == [
        "min_snr_gamma (None -> 5.0)"
    ]


def test_train_prior_command(dataset_path: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ssd3d.commands.toyworld_train import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    args = ["toyworld", "train-prior", str(dataset_path), "--out", str(tmp_path), "--steps", "2"]
    tiny = [
        "threads=1",
        "batch_size=4",
        "unet.base_channels=8",
        "unet.channel_mult=[1, 2]",
        "unet.attention_levels=[1]",
        "unet.norm_groups=4",
    ]
    result = CliRunner().invoke(app, args + tiny)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "toy_prior.safetensors").is_file() and (tmp_path / "samples.png").is_file()
    assert load_prior_file(tmp_path / "toy_prior.safetensors").metadata["steps"] == "2"
    bad = CliRunner().invoke(app, args + ["--resume", "lrr=1"])
    assert isinstance(bad.exception, SSD3DError) and "did you mean 'lr'" in str(bad.exception)
