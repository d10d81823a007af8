"""Time every estimator on Stable-Diffusion-latent-sized tensors, against one prior call.

    python benchmarks/estimators.py [--repeats 200] [--no-unet] [--device cpu|cuda]

Prints, per batch shape ([1,4,64,64] and [4,4,64,64]), the median time of each estimator
(the pure tensor maths after the prior has predicted), the SSD/SDS ratio, and the median
time of one batched cond+uncond UNet forward of Stable Diffusion 2.1's architecture
(randomly initialised from its config, so no download) for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ssd3d.estimators import ESTIMATORS, NoisePredictions, build_estimator
from ssd3d.priors import make_alphas_cumprod

SHAPES = [(1, 4, 64, 64), (4, 4, 64, 64)]

# stabilityai/stable-diffusion-2-1-base unet/config.json (the parts that set its cost)
SD21_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, repeats, device, warmup=True):
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def predictions(shape, device, generator):
    b = shape[0]

    def rand():
        return torch.randn(shape, generator=generator).to(device)

    t = torch.randint(20, 981, (b,), generator=generator)
    alpha_bar = make_alphas_cumprod().float()[t].to(device)
    return NoisePredictions(rand(), rand(), t.to(device), alpha_bar, rand(), rand(), rand())


def unet_call_ms(shape, device, repeats):
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging

    logging.set_verbosity_error()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = UNet2DConditionModel(**SD21_UNET).to(device, dtype).eval()
    b = shape[0] * 2  # cond + uncond in one batch, as ssd3d.guidance does
    x = torch.randn(b, *shape[1:], device=device, dtype=dtype)
    t = torch.full((b,), 500, device=device)
    text = torch.randn(b, 77, 1024, device=device, dtype=dtype)
    with torch.no_grad():
        # a CPU call takes tens of seconds: no warm-up there
        call = lambda: unet(x, t, encoder_hidden_states=text)  # noqa: E731
        return median_ms(call, repeats, device, warmup=device.type == "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--unet-repeats", type=int, default=None, help="default: 5 GPU, 1 CPU")
    parser.add_argument("--no-unet", action="store_true", help="skip the UNet reference")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    unet_repeats = args.unet_repeats or (5 if device.type == "cuda" else 1)
    generator = torch.Generator().manual_seed(0)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch threads: {torch.get_num_threads()}")
    for shape in SHAPES:
        p = predictions(shape, device, generator)
        print(f"\nx0 {list(shape)}")
        times = {}
        for est_name in ESTIMATORS:
            est = build_estimator(est_name)
            times[est_name] = median_ms(lambda est=est, p=p: est(p), args.repeats, device)
            print(f"  {est_name:18s} {times[est_name]:8.3f} ms")
        extra = times["ssd"] - times["sds"]
        print(f"  SSD / SDS ratio     {times['ssd'] / times['sds']:8.2f}x  (+{extra:.3f} ms)")
        if not args.no_unet:
            unet = unet_call_ms(shape, device, unet_repeats)
            print(f"  one SD2.1 UNet call (cond+uncond, batch {2 * shape[0]}): {unet:9.1f} ms")
            print(f"  SSD's extra cost = {100 * extra / unet:.4f}% of one prior call")


if __name__ == "__main__":
    main()
