"""``rlrf models fetch|check``: fill the weight layouts on a machine with internet, verify them anywhere.

The service itself never downloads. ``fetch`` is the one place that does, run once by an operator:
DreamSim's release archive (unzipped into ``RLRF_DREAMSIM_DIR``), the DINO backbone DreamSim would
otherwise pull through torch.hub, and an open_clip checkpoint (through open_clip's own downloader,
then copied to ``RLRF_CLIP_CHECKPOINT``). ``check`` loads what the settings point at and embeds one
blank canvas, so a broken copy fails on the operator's terminal, not in the first training step.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from services.reward_api.core.errors import ConfigError
from services.reward_api.core.settings import Settings
from services.reward_api.models.weights import DINO_VITB16_URL, DREAMSIM_BACKBONE_FILES, DREAMSIM_LAYOUTS


def plan(settings: Settings, clip_tag: str) -> list[str]:
    """What ``fetch`` would download, and where to."""
    steps = []
    if settings.dreamsim_dir is not None:
        layout = DREAMSIM_LAYOUTS[settings.dreamsim_type]
        steps.append(f"{layout.archive_url} -> unzip into {settings.dreamsim_dir}")
        if "dino_vitb16" in layout.backbones:
            steps.append(
                f"{DINO_VITB16_URL} -> {settings.dreamsim_dir / DREAMSIM_BACKBONE_FILES['dino_vitb16'].relpath}"
            )
    if settings.clip_checkpoint is not None:
        steps.append(f"open_clip {settings.clip_model} pretrained={clip_tag} -> {settings.clip_checkpoint}")
    return steps


def fetch(settings: Settings, clip_tag: str) -> None:
    """Download every configured model's files into its layout (needs internet access)."""
    import torch

    if settings.dreamsim_dir is not None:
        root = settings.dreamsim_dir
        root.mkdir(parents=True, exist_ok=True)
        layout = DREAMSIM_LAYOUTS[settings.dreamsim_type]
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "dreamsim.zip"
            torch.hub.download_url_to_file(layout.archive_url, str(archive))
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(root)
        if "dino_vitb16" in layout.backbones:
            target = root / DREAMSIM_BACKBONE_FILES["dino_vitb16"].relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(DINO_VITB16_URL, str(target))
    if settings.clip_checkpoint is not None:
        import open_clip
        from open_clip.pretrained import download_pretrained, get_pretrained_cfg

        cfg = get_pretrained_cfg(settings.clip_model, clip_tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(settings.clip_model)
            raise ConfigError(f"no open_clip weights {settings.clip_model}/{clip_tag}; tags: {tags}")
        with tempfile.TemporaryDirectory() as tmp:
            downloaded = download_pretrained(cfg, cache_dir=tmp)
            settings.clip_checkpoint.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(downloaded, settings.clip_checkpoint)


def check(settings: Settings) -> list[str]:
    """Load every configured model and embed a blank canvas; one line per feature checked."""
    from services.reward_api.models.scorer import ModelScorer

    scorer = ModelScorer(settings)
    features = scorer.configured_features()
    if not features:
        return []
    blank = np.full((settings.size, settings.size, 3), 255, np.uint8)
    inputs = {
        f: ["a blank canvas"] if f == "clip_text" else [blank if f != "dreamsim_edges" else blank[:, :, 0]]
        for f in features
    }
    try:
        out = scorer.embed(inputs)
    finally:
        scorer.close()
    return [f"{feature}: ok, embedding dim {array.shape[1]}" for feature, array in out.items()]
