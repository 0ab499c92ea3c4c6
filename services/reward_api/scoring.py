"""What runs inside a sandboxed worker for one SVG: policy check, render, image components.

These functions are the unit of isolation: ``sandbox.py`` runs them in a child process with a
memory and a wall-clock limit, so a renderer that hangs, aborts or segfaults costs one rollout its
score (``render_timeout`` / ``render_crash``), not the group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.reward_api.components import COMPONENTS, Canvas, Sample
from services.reward_api.core.errors import RewardError
from services.reward_api.core.results import Status
from services.reward_api.core.settings import Settings
from services.reward_api.guards import Structure, structure
from services.reward_api.svg.extract import extract_svg
from services.reward_api.svg.policy import CheckedSvg, PolicyLimits, check_svg
from services.reward_api.svg.render import RenderCrash, Renderer, RenderError, RenderLimitError, content_extent, render

TINY_FACTOR = 8  # a candidate declaring a size 8x smaller than the reference's is flagged


@dataclass(frozen=True, slots=True)
class RenderJob:
    """Everything a worker needs to score SVGs against one reference (picklable, no settings)."""

    width: int
    height: int
    renderer: Renderer
    font_file: Path
    font_family: str
    limits: PolicyLimits
    image_components: tuple[str, ...] = ()
    blank_fraction: float = 0.005
    reference_size: tuple[float, float] = (0.0, 0.0)
    reference_blank: bool = False
    return_images: tuple[str, ...] = ()  # "rgb" and/or "edges": canvases the learned models need
    strip_text: bool = False  # Text2SVG: cut <text> before rendering (see components/clip_text.py)


def policy_limits(settings: Settings) -> PolicyLimits:
    """The policy caps that ``settings`` configure."""
    return PolicyLimits(
        max_svg_bytes=settings.max_svg_bytes,
        max_elements=settings.max_elements,
        max_depth=settings.max_depth,
        max_data_uri_bytes=settings.max_data_uri_bytes,
        max_raster_pixels=settings.max_raster_pixels,
        reject_embedded_raster=settings.embedded_raster == "reject",
    )


def render_job(settings: Settings, **fields: Any) -> RenderJob:
    """A job on the canvas, renderer, font, policy and blank threshold of ``settings``; ``fields`` override."""
    defaults: dict[str, Any] = {
        "width": settings.size,
        "height": settings.size,
        "renderer": settings.renderer,
        "font_file": settings.font_file,
        "font_family": settings.font_family,
        "limits": policy_limits(settings),
        "blank_fraction": settings.blank_fraction,
    }
    return RenderJob(**{**defaults, **fields})


@dataclass(slots=True)
class Outcome:
    """A worker's verdict on one SVG: status, image components, flags."""

    status: Status
    components: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    detail: str | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    # The candidate's structure for the pipeline's guards, computed here so the parse runs in the
    # render workers (distributed mode's wire format carries it); ``None`` means the pipeline computes it.
    structure: Structure | None = None


@dataclass(slots=True)
class ReferenceRender:
    """A rendered reference SVG, or why it could not be rendered."""

    image: np.ndarray | None
    intrinsic_size: tuple[float, float]
    status: Status
    detail: str | None = None


def is_blank(canvas: Canvas, blank_fraction: float) -> bool:
    """Whether a render has nothing drawn: fewer than ``blank_fraction`` (``Settings.blank_fraction``) of its
    pixels are non-white, or differ from its most common colour (one colour flooding the canvas)."""
    return canvas.ink_fraction < blank_fraction or canvas.flat_fraction < blank_fraction


def _blank_detail(canvas: Canvas) -> str:
    if canvas.ink_fraction <= canvas.flat_fraction:
        return f"{canvas.ink_fraction:.2%} non-white pixels"
    return f"one colour fills {1 - canvas.flat_fraction:.2%} of the canvas"


def score_svg(reference: Canvas | None, svg: str, *, job: RenderJob) -> Outcome:
    """Check, render and score one candidate SVG against the prepared reference canvas.

    ``reference`` is ``None`` for a text-only group: then no render-stage component is requested.
    """
    checked = _check(svg, job)
    if checked.status is not Status.ok:
        return Outcome(checked.status, flags=checked.flags, detail=checked.detail)
    flags = list(checked.flags)
    ref_w, ref_h = job.reference_size
    cand_w, cand_h = checked.intrinsic_size
    if cand_w * TINY_FACTOR < ref_w or cand_h * TINY_FACTOR < ref_h:
        flags.append("tiny_viewbox")
    image, failure = _render_checked(checked, job)
    if failure is not None:
        failure.flags[:0] = flags
        return failure
    assert image is not None
    canvas = Canvas(image)
    if is_blank(canvas, job.blank_fraction) and not job.reference_blank:
        return Outcome(Status.blank, flags=[*flags, "blank"], detail=_blank_detail(canvas))
    candidate, ref = Sample(canvas), Sample(reference)
    components = {name: COMPONENTS[name].compute(candidate, ref) for name in job.image_components}
    images = {kind: canvas.image if kind == "rgb" else canvas.edges for kind in job.return_images}
    scored = {k: v for k, v in components.items() if v is not None}
    return Outcome(Status.ok, scored, flags, images=images, structure=structure(svg))


def render_reference(_context: object, svg: str, *, job: RenderJob) -> ReferenceRender:
    """Render a reference SVG on the candidates' path: extraction, policy, canvas (rasters allowed).

    Extraction first, as for a completion, so a reference file's XML prolog and ``DOCTYPE`` are
    dropped the same way and a prefixed ``<svg:svg>`` root is found the same way.
    """
    extraction = extract_svg(svg, max_chars=max(len(svg), 1))
    if extraction.svg is None:
        why = "its <svg> never closes" if extraction.status is Status.truncated else "it has no <svg> element"
        return ReferenceRender(None, (0.0, 0.0), extraction.status, why)
    checked = _check(extraction.svg, job)  # the reference's job never strips text
    if checked.status is not Status.ok:
        return ReferenceRender(None, checked.intrinsic_size, checked.status, checked.detail)
    image, failure = _render_checked(checked, job)
    if failure is not None:
        return ReferenceRender(None, checked.intrinsic_size, failure.status, failure.detail)
    return ReferenceRender(image, checked.intrinsic_size, Status.ok)


def _check(svg: str, job: RenderJob) -> CheckedSvg:
    """The policy check onto the job's canvas, the same for references and candidates."""
    return check_svg(
        svg,
        width=job.width,
        height=job.height,
        limits=job.limits,
        font_family=job.font_family,
        strip_text=job.strip_text,
        measure=content_extent,
    )


def _render_checked(checked: CheckedSvg, job: RenderJob) -> tuple[np.ndarray | None, Outcome | None]:
    assert checked.document is not None
    try:
        image = render(
            checked.document,
            width=job.width,
            height=job.height,
            renderer=job.renderer,
            font_file=job.font_file,
            font_family=job.font_family,
        )
    except RenderLimitError as exc:
        return None, Outcome(Status.render_crash, flags=["renderer_limit"], detail=str(exc))
    except RenderCrash as exc:
        return None, Outcome(Status.render_crash, flags=["panic"], detail=str(exc))
    except RenderError as exc:
        return None, Outcome(Status.parse_error, flags=["renderer"], detail=str(exc))
    except MemoryError:
        return None, Outcome(Status.render_crash, flags=["memory"], detail="renderer exceeded the memory limit")
    except RecursionError:
        return None, Outcome(Status.render_crash, flags=["recursion"], detail="renderer exceeded the recursion limit")
    except (KeyboardInterrupt, SystemExit, RewardError):  # RewardError: our configuration, not the SVG
        raise
    except BaseException as exc:  # pyo3 PanicException derives from BaseException
        return None, Outcome(Status.render_crash, flags=["panic"], detail=f"{type(exc).__name__}: {exc}"[:500])
    return image, None
