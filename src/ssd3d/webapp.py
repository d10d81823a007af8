"""``ssd3d app``: the text-to-3D pipeline in the browser (Gradio, the ``app`` extra).

A run of the app is a run of ``ssd3d generate``: the same config resolution (preset, fields,
``key=value`` overrides), the same sequence (``ssd3d.generation.Generation``), the same run
folder with its exports and report.html. While it runs, the page shows a progress bar and orbit
views of the scene as it is; one run at a time (a queue), and a cancel button.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from ssd3d.errors import SSD3DError

INSTALL_HINT = 'the app needs Gradio: pip install "ssd3d[app]"'
# Orbit views of the scene while it runs: at least PREVIEW_SECONDS apart, and rarer when
# they are slow, so that previews take at most 1 / (1 + PREVIEW_SPACING) of the run.
# Cancelling takes effect at a preview.
PREVIEW_SECONDS = 1.0
PREVIEW_SPACING = 4
PREVIEW_VIEWS = 4
PREVIEW_RESOLUTION = 64
EXAMPLES = ("a red cube", "a blue torus", "a yellow wedge", "a green sphere")
DEFAULT_OUT = Path("outputs/app")


def require_gradio():
    """The gradio module, or a one-line error saying how to install it."""
    try:
        import gradio
    except ImportError:
        raise SSD3DError(INSTALL_HINT) from None
    return gradio


def estimator_defaults(name: str) -> str:
    """``"ssd"`` -> ``"guidance_scale=7.5 tau=200 …"``: the parameters to edit."""
    from ssd3d.estimators import build_estimator, describe

    try:
        return describe(build_estimator(name)).partition(" ")[2]
    except SSD3DError:
        return ""


@functools.lru_cache(maxsize=2)
def _load_prior(spec):
    """Priors are loaded once per spec and kept: the next run with the same prior starts at
    once (the spec is a frozen dataclass of everything the prior loads)."""
    from ssd3d.pipeline.priors import load_prior

    return load_prior(spec)


def _config(prompt, prior, estimator, params, steps, seed, model, overrides):
    from ssd3d.pipeline.config import resolve_config

    if steps is None or seed is None:  # an emptied number box
        raise SSD3DError("give a number of steps and a seed")
    fields = {
        "prompt": prompt.strip(),
        "estimator": f"{estimator} {params or ''}".strip(),
        "steps": int(steps),
        "seed": int(seed),
    }
    if model and model.strip():
        fields["model"] = model.strip()
    return resolve_config(prior, fields, (overrides or "").split())


def distil(
    out_root: Path, prompt, prior, estimator, params, steps, seed, model, overrides, progress
):
    """The app's generator: yields (preview, status, mesh, video, downloads) as it goes.

    User errors (an unknown prompt, a bad override, a missing model) become ``gr.Error``,
    shown on the page; the run folder is made only once everything has been checked.
    """
    import gradio as gr

    from ssd3d.generation import Generation
    from ssd3d.pipeline.outputs import orbit_sheet

    try:
        cfg = _config(prompt, prior, estimator, params, steps, seed, model, overrides)
        cfg.validate()  # a bad estimator or override is said before the prior loads
        yield gr.skip(), f"loading the {cfg.prior} prior…", None, None, None
        loaded = _load_prior(cfg.prior_spec())
        gen = Generation.new(cfg, out_root, prior=loaded)  # an unknown prompt fails here
        run, run_dir = gen.run, gen.run_dir.path
        next_preview = time.perf_counter()
        for record in gen.steps():
            progress((run.step, cfg.steps), desc="distilling", unit="steps")
            now = time.perf_counter()
            if now >= next_preview or run.step == cfg.steps:
                views = orbit_sheet(run.scene, PREVIEW_VIEWS, PREVIEW_RESOLUTION)
                cost = time.perf_counter() - now
                next_preview = now + max(PREVIEW_SECONDS, (1 + PREVIEW_SPACING) * cost)
                status = (
                    f"step {run.step} / {cfg.steps} · loss {record.loss:.3g} · t {record.t}"
                    f" · {record.prior_calls:g} prior calls/step"
                )
                yield views, status, gr.skip(), gr.skip(), gr.skip()
        run.save(gen.run_dir)
        progress(1.0, desc="exporting mesh, video and report")
        summary = gen.finish()
    except SSD3DError as e:
        raise gr.Error(str(e), print_exception=False) from None
    exported = {k: str(run_dir / name) for k, name in summary["files"].items()}
    files = [exported[k] for k in ("glb", "obj", "mp4") if k in exported]
    report = gen.run_dir.report_path
    done = f"done in {summary['train_seconds']:.1f} s: {run_dir} (report: {report})"
    # Every output again: an API client sees the last yield only.
    yield views, done, exported.get("glb"), exported.get("mp4"), files


def build_app(out_root: Path = DEFAULT_OUT):
    """The Gradio Blocks of the app; runs are written under ``out_root``."""
    gr = require_gradio()
    from ssd3d.estimators import ESTIMATORS
    from ssd3d.pipeline.config import DEFAULT_PRIOR
    from ssd3d.pipeline.priors import PRIOR_NAMES

    out_root = Path(out_root)

    def generate(
        prompt, prior, estimator, params, steps, seed, model, overrides, progress=gr.Progress()
    ):
        yield from distil(
            out_root, prompt, prior, estimator, params, steps, seed, model, overrides, progress
        )

    with gr.Blocks(title="ssd3d", analytics_enabled=False) as demo:
        gr.Markdown(
            "## ssd3d: text to 3D with score distillation\n"
            "A prompt, a frozen 2D prior and an estimator in; a mesh, a turntable video and "
            "a report out. The `exact` and `toy` priors know ToyWorld's prompts "
            "(a *colour* *shape*)."
        )
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="prompt", value=EXAMPLES[0])
                prior = gr.Dropdown(list(PRIOR_NAMES), value=DEFAULT_PRIOR, label="prior")
                with gr.Row():
                    estimator = gr.Dropdown(list(ESTIMATORS), value="ssd", label="estimator")
                    params = gr.Textbox(
                        label="estimator parameters", value=estimator_defaults("ssd"), scale=2
                    )
                with gr.Row():
                    steps = gr.Number(600, label="steps", precision=0, minimum=1)
                    seed = gr.Number(0, label="seed", precision=0, minimum=0)
                with gr.Accordion("advanced", open=False):
                    model = gr.Textbox(label="prior weights or dataset (empty: the default)")
                    overrides = gr.Textbox(
                        label="config overrides (key=value …)",
                        placeholder="grid.resolution=32 export.mesh_resolution=64",
                    )
                with gr.Row():
                    run_button = gr.Button("Generate", variant="primary")
                    cancel_button = gr.Button("Cancel", variant="stop")
                status = gr.Markdown()
                gr.Examples([[p] for p in EXAMPLES], inputs=[prompt])
            with gr.Column(scale=3):
                preview = gr.Image(
                    label="orbit views (normals below), updated while it runs",
                    type="numpy",
                    interactive=False,
                    format="png",
                )
                mesh = gr.Model3D(
                    label="mesh", clear_color=(0.96, 0.97, 0.98, 1.0), height=360, elem_id="mesh"
                )
                with gr.Row():
                    video = gr.Video(label="turntable", autoplay=True, loop=True, height=240)
                    files = gr.File(label="downloads", file_count="multiple")
        estimator.change(estimator_defaults, inputs=estimator, outputs=params)
        run_event = run_button.click(
            generate,
            inputs=[prompt, prior, estimator, params, steps, seed, model, overrides],
            outputs=[preview, status, mesh, video, files],
            api_name="generate",
            concurrency_limit=1,
            show_progress_on=[status],  # the preview stays visible while it runs
        )
        cancel_button.click(None, cancels=[run_event])
    # One run at a time, whoever asks: the others wait in the queue and see their place.
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(demo, out_root: Path, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Start the app's server; the page may serve files from the run folders only."""
    gr = require_gradio()
    # System fonts: the default theme would fetch its fonts from the web.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        return demo.launch(
            server_name=host,
            server_port=port,
            allowed_paths=[str(Path(out_root).resolve())],
            theme=theme,
            footer_links=[],
            **kwargs,
        )
    except OSError:  # Gradio's "Cannot find empty port"
        raise SSD3DError(f"port {port} on {host} is taken: pick another with --port") from None


__all__ = ["INSTALL_HINT", "build_app", "distil", "estimator_defaults", "launch", "require_gradio"]
