"""Where every learned model's weights live on disk, and the error when one is missing.

Nothing here downloads at run time: each model reads files a settings path points at, laid out the
way the upstream package itself caches them. ``rlrf models fetch`` (on a machine with internet
access) fills those layouts; on a machine without, copy the files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.reward_api.core.errors import MissingWeightsError

DREAMSIM_RELEASES = "https://github.com/ssundaram21/dreamsim/releases/download"
DINO_VITB16_URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"


@dataclass(frozen=True, slots=True)
class WeightFile:
    """One file a loader reads: its path relative to the model directory and where it comes from."""

    relpath: str
    source: str
    alternatives: tuple[str, ...] = ()  # other names the same file may have (safetensors vs bin)


@dataclass(frozen=True, slots=True)
class DreamSimLayout:
    """The files of one DreamSim variant inside its cache directory."""

    lora_dir: str
    backbones: tuple[str, ...]
    archive_url: str


# DreamSim's backbones, by its own model_type names, and the file each is read from. The DINO
# backbone is the one DreamSim fetches through torch.hub (facebookresearch/dino), which caches it
# at <hub dir>/checkpoints/...; DreamSim sets the hub dir to its cache dir.
DREAMSIM_BACKBONE_FILES: dict[str, WeightFile] = {
    "dino_vitb16": WeightFile("checkpoints/dino_vitbase16_pretrain.pth", DINO_VITB16_URL),
    "clip_vitb16": WeightFile("clip_vitb16_pretrain.pth.tar", "the DreamSim checkpoint archive"),
    "clip_vitb32": WeightFile("clip_vitb32_pretrain.pth.tar", "the DreamSim checkpoint archive"),
    "open_clip_vitb16": WeightFile("open_clip_vitb16_pretrain.pth.tar", "the DreamSim checkpoint archive"),
    "open_clip_vitb32": WeightFile("open_clip_vitb32_pretrain.pth.tar", "the DreamSim checkpoint archive"),
}

DREAMSIM_LAYOUTS: dict[str, DreamSimLayout] = {
    "ensemble": DreamSimLayout(
        "ensemble_lora",
        ("dino_vitb16", "clip_vitb16", "open_clip_vitb16"),
        f"{DREAMSIM_RELEASES}/v0.2.0-checkpoints/dreamsim_ensemble_checkpoint.zip",
    ),
    "dino_vitb16": DreamSimLayout(
        "dino_vitb16_single_lora",
        ("dino_vitb16",),
        f"{DREAMSIM_RELEASES}/v0.2.0-checkpoints/dreamsim_dino_vitb16_checkpoint.zip",
    ),
    "open_clip_vitb32": DreamSimLayout(
        "open_clip_vitb32_single_lora",
        ("open_clip_vitb32",),
        f"{DREAMSIM_RELEASES}/v0.2.0-checkpoints/dreamsim_open_clip_vitb32_checkpoint.zip",
    ),
    "clip_vitb32": DreamSimLayout(
        "clip_vitb32_single_lora",
        ("clip_vitb32",),
        f"{DREAMSIM_RELEASES}/v0.2.0-checkpoints/dreamsim_clip_vitb32_checkpoint.zip",
    ),
}


def dreamsim_files(kind: str) -> list[WeightFile]:
    """Every file ``load_dreamsim`` reads for variant ``kind``."""
    layout = DREAMSIM_LAYOUTS[kind]
    lora = [
        WeightFile(f"{layout.lora_dir}/adapter_config.json", layout.archive_url),
        WeightFile(
            f"{layout.lora_dir}/adapter_model.safetensors",
            layout.archive_url,
            alternatives=(f"{layout.lora_dir}/adapter_model.bin",),
        ),
    ]
    return lora + [DREAMSIM_BACKBONE_FILES[name] for name in layout.backbones]


def require(root: Path, files: Iterable[WeightFile], *, model: str, setting: str, fix: str | None = None) -> None:
    """Raise ``MissingWeightsError`` naming the first missing file, where it comes from, and the fix.

    Raises:
        MissingWeightsError: ``root`` is not a directory or a listed file is absent.
    """
    fix = fix or _FIX
    if not root.is_dir():
        raise MissingWeightsError(f"{model}: {setting}={root} is not a directory. {fix}")
    for weight in files:
        candidates = [weight.relpath, *weight.alternatives]
        if not any((root / name).is_file() for name in candidates):
            raise MissingWeightsError(
                f"{model}: missing weight file {root / weight.relpath} (from {weight.source}). {fix}"
            )


def require_file(path: Path, *, model: str, setting: str, source: str, fix: str | None = None) -> None:
    """Raise ``MissingWeightsError`` unless ``path`` is a file."""
    if not path.is_file():
        raise MissingWeightsError(f"{model}: missing weight file {path} ({setting}; from {source}). {fix or _FIX}")


_FIX = "Run `rlrf models fetch` on a machine with internet access and copy the files, or fix the setting."
# The eval-only models (LPIPS, DINO) are not fetched by `rlrf models fetch`.
EVAL_FIX = "Download it on a machine with internet access (docs/EVAL.md, 'Weights') and copy it here."
