"""Fixtures for prior tests: a tiny random Stable Diffusion pipeline on disk, hub offline."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny randomly initialised SD pipeline (safetensors), built once per session.

    Skips when the optional ``sd`` extra (diffusers, transformers) is not installed.
    """
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from ssd3d.priors.stable_diffusion import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub access during the test: HF_HUB_OFFLINE=1 (ssd3d reads it at call time)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
