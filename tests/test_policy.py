"""Policy rules and canvas normalisation, on the policy function alone."""

from __future__ import annotations

import base64
import io
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from services.reward_api.core.results import Status
from services.reward_api.svg.policy import PolicyLimits, check_svg
from tests import _hostile as h


def _svg_uri(svg: str, *, encoded: bool = True) -> str:
    if encoded:
        return "data:image/svg+xml;base64," + _b64(svg.encode())
    return "data:image/svg+xml;charset=utf-8," + urllib.parse.quote(svg)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(size: tuple[int, int] = (4, 4), kind: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, kind)
    return buffer.getvalue()


def _check(svg: str | bytes, **limits: int) -> tuple[Status, list[str]]:
    result = check_svg(svg, width=224, height=224, limits=PolicyLimits(**limits))
    return result.status, result.flags


@pytest.mark.parametrize(
    ("svg", "rule"),
    [
        (h.billion_laughs(), "doctype"),
        (h.xxe("file:///etc/passwd"), "doctype"),
        (f'<?xml-stylesheet href="x.css"?><svg {h.NS}/>', "processing_instruction"),
        (f'<svg {h.NS} xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></svg>', "xinclude"),
        (f"<svg {h.NS}><script>1</script></svg>", "script"),
        (f"<svg {h.NS}><svg:script xmlns:svg='http://www.w3.org/2000/svg'/></svg>", "script"),
        (f"<svg {h.NS}><foreignObject/></svg>", "foreign_object"),
        (h.image_href("/etc/passwd"), "external_href"),
        (h.image_href("https://example.com/a.png"), "external_href"),
        (h.image_href(" //example.com/a.png"), "external_href"),
        (f'<svg {h.NS}><use xlink:href="other.svg#a"/></svg>', "external_href"),
        (f'<svg {h.NS}><pattern id="p" href="tiles.svg#p"/></svg>', "external_href"),
        (f'<svg {h.NS}><linearGradient id="g" xlink:href="/tmp/g.svg#g"/></svg>', "external_href"),
        (f'<svg {h.NS}><text><textPath href="paths.svg#p">x</textPath></text></svg>', "external_href"),
        (f'<svg {h.NS}><filter id="f"><feImage href="/etc/passwd"/></filter></svg>', "external_href"),
        (f'<svg {h.NS}><a href="#x"><use href="https://example.com/s.svg#a"/></a></svg>', "external_href"),
        (h.image_href(_svg_uri(f'<svg {h.NS}><image href="/etc/passwd"/></svg>')), "external_href"),
        (h.image_href(_svg_uri(f"<svg {h.NS}><script>1</script></svg>")), "script"),
        (h.image_href(_svg_uri(f'<!DOCTYPE svg [<!ENTITY x SYSTEM "/etc/passwd">]><svg {h.NS}>&x;</svg>')), "doctype"),
        (h.image_href(_svg_uri(h.image_href(_svg_uri(h.image_href(_svg_uri(h.GOOD)))))), "too_deep"),
        (h.image_href(_svg_uri("<html/>")), "data_uri"),
        (h.image_href(_svg_uri("<svg><rect></svg>")), "data_uri"),
        (h.image_href(_svg_uri(h.GOOD, encoded=False)).replace("image href", "feImage href"), "data_uri"),
        (h.image_href("data:text/html;base64,PHN2Zy8+"), "data_uri"),
        (h.image_href("data:;base64," + base64.b64encode(b"GIF89a not really").decode()), "raster_too_large"),
        (f'<svg {h.NS}><feImage href="data:image/svg+xml;base64,PHN2Zy8+"/></svg>', "data_uri"),
        (f'<svg {h.NS}><use href="data:image/png;base64,AAAA"/></svg>', "data_uri"),
        (h.image_href("data:image/png,notbase64"), "data_uri"),
        (h.image_href("data:image/png;base64,!!!"), "data_uri"),
        (h.image_href(h.png_bomb_data_uri()), "raster_too_large"),
        (f"<svg {h.NS}><style>@import 'x.css';</style></svg>", "css_import"),
        (f"<svg {h.NS}><style>@IMPORT url(x.css);</style></svg>", "css_import"),
        (f"<svg {h.NS}><style>rect {{ fill: url(http://x/y#z) }}</style></svg>", "external_url"),
        (f"<svg {h.NS}><style>@font-face {{ src: url('/usr/share/fonts/x.ttf') }}</style></svg>", "external_url"),
        (f"<svg {h.NS}><style>rect {{ fill: u\\72l(x.svg) }}</style></svg>", "css_escape"),
        (f'<svg {h.NS}><rect style="fill:url(x.svg#a)"/></svg>', "external_url"),
        (f'<svg {h.NS}><rect mask="url(file:///m.svg#a)"/></svg>', "external_url"),
    ],
)
def test_rejections(svg: str, rule: str) -> None:
    assert _check(svg) == (Status.rejected, [rule])


def test_caps() -> None:
    assert _check(h.GOOD, max_svg_bytes=64) == (Status.rejected, ["too_large"])
    assert _check(h.deep_nesting(100), max_depth=64) == (Status.rejected, ["too_deep"])
    assert _check(h.deep_nesting(100_000), max_svg_bytes=10**7) == (Status.rejected, ["too_deep"])
    many = f"<svg {h.NS}>" + "<rect/>" * 50 + "</svg>"
    assert _check(many, max_elements=20) == (Status.rejected, ["too_many_elements"])
    big_uri = h.image_href("data:image/png;base64," + "A" * 2000)
    assert _check(big_uri, max_data_uri_bytes=1000) == (Status.rejected, ["data_uri"])


def test_parse_errors() -> None:
    assert _check(b"<svg>\xff</svg>") == (Status.parse_error, ["encoding"])
    assert _check("<svg>\udcff</svg>") == (Status.parse_error, ["encoding"])
    assert _check("<svg><rect></svg>") == (Status.parse_error, ["xml"])
    assert _check("<svg><text>&nbsp;</text></svg>") == (Status.parse_error, ["xml"])
    assert _check(f"<html {h.NS}/>") == (Status.parse_error, ["not_svg"])


def test_allowed_references_and_text_flag() -> None:
    svg = (
        f'<svg {h.NS} viewBox="0 0 10 10"><defs><linearGradient id="g"/></defs>'
        '<rect fill="url(#g)" style="stroke:url( \'#g\' )"/><use xlink:href="#g"/><text>hi</text></svg>'
    )
    result = check_svg(svg, width=224, height=224)
    assert result.status is Status.ok and result.flags == ["text_elements"] and result.has_text


def test_root_is_normalised_to_the_canvas() -> None:
    result = check_svg(
        '<?xml version="1.0"?><!-- c --><svg width="1e8" height="5e7" a=">"><rect/></svg>', width=300, height=200
    )
    assert result.status is Status.ok and result.document is not None
    root = ET.fromstring(result.document)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox"), root.get("a")) == (
        "300",
        "150",  # the document's own 2:1 viewport, fitted into the canvas
        "0 0 1e+08 5e+07",
        ">",
    )
    assert result.intrinsic_size == (1e8, 5e7) and result.viewport == (300, 150)


@pytest.mark.parametrize(
    ("attrs", "size", "viewbox"),
    [
        ('viewBox="0 0 36 36"', (36, 36), "0 0 36 36"),
        ('width="48" height="24"', (48, 24), "0 0 48 24"),
        ('width="1in" height="2in"', (96, 192), "0 0 96 192"),
        ('width="100%" height="100%"', (100, 100), "0 0 100 100"),
        ('width="20" viewBox="0 0 10 5"', (20, 10), "0 0 10 5"),
        ("", (100, 100), "0 0 100 100"),
    ],
)
def test_intrinsic_size_and_viewbox(attrs: str, size: tuple[float, float], viewbox: str) -> None:
    result = check_svg(f"<svg {attrs}/>", width=64, height=64)
    assert result.intrinsic_size == size
    assert ET.fromstring(result.document or "").get("viewBox") == viewbox


def test_xlink_namespace_is_added_when_used_undeclared() -> None:
    result = check_svg('<svg><use xlink:href="#a"/></svg>', width=64, height=64)
    root = ET.fromstring(result.document or "")  # parses only if xmlns:xlink was added
    assert root[0].get("{http://www.w3.org/1999/xlink}href") == "#a"


def test_text_gets_the_configured_font() -> None:
    result = check_svg("<svg><text>hi</text></svg>", width=64, height=64, font_family="DejaVu Sans")
    assert '<style>*{font-family:"DejaVu Sans" !important}</style>' in (result.document or "")
    plain = check_svg("<svg><rect/></svg>", width=64, height=64, font_family="DejaVu Sans")
    assert "<style>" not in (plain.document or "")


def test_hyperlinks_are_not_fetches() -> None:
    """``<a href>`` to anywhere is a link (issue 12); the shapes inside it are still checked."""
    for href in ("https://example.com/", "/etc/passwd", "javascript:alert(1)", "mailto:a@b.c"):
        for attr in ("href", "xlink:href"):
            svg = f'<svg {h.NS} viewBox="0 0 10 10"><a {attr}="{href}"><rect width="5" height="5"/></a></svg>'
            assert _check(svg) == (Status.ok, [])
    prefixed = f'<svg {h.NS} xmlns:s="http://www.w3.org/2000/svg"><s:a href="https://x.org"><text>hi</text></s:a></svg>'
    assert _check(prefixed) == (Status.ok, ["text_elements"])


@pytest.mark.parametrize("encoded", [True, False])
def test_svg_data_uri_images_are_checked_recursively(encoded: bool) -> None:
    inner = f'<svg {h.NS} viewBox="0 0 4 4"><rect width="4" height="4" fill="blue"/></svg>'
    assert _check(h.image_href(_svg_uri(inner, encoded=encoded))) == (Status.ok, [])
    doubly = h.image_href(_svg_uri(h.image_href(_svg_uri(inner, encoded=encoded))))
    assert _check(doubly) == (Status.ok, [])
    assert _check(doubly, max_nested_svg=1) == (Status.rejected, ["too_deep"])
    # A raster inside the vector image is still an embedded raster, and text inside it is still text.
    raster = h.image_href(_svg_uri(h.image_href("data:image/png;base64," + _b64(_png())), encoded=encoded))
    assert _check(raster) == (Status.rejected, ["embedded_raster"])
    assert _check(raster, reject_embedded_raster=False) == (Status.ok, ["embedded_raster"])
    texty = h.image_href(_svg_uri(f"<svg {h.NS}><text>prompt</text></svg>", encoded=encoded))
    assert _check(texty) == (Status.ok, ["text_elements"])
    cut = check_svg(texty, width=64, height=64, strip_text=True)
    assert (cut.status, cut.flags) == (Status.rejected, ["text_in_image"])  # strip_text cannot reach inside


def test_embedded_svg_shares_the_caps() -> None:
    inner = f"<svg {h.NS}>" + "<rect/>" * 30 + "</svg>"
    assert _check(h.image_href(_svg_uri(inner)), max_elements=20) == (Status.rejected, ["too_many_elements"])
    assert _check(h.image_href(_svg_uri(inner)), max_data_uri_bytes=100) == (Status.rejected, ["data_uri"])


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_raster_data_uri_without_mime_type_is_sniffed(kind: str) -> None:
    svg = h.image_href("data:;base64," + _b64(_png(kind=kind)))
    assert _check(svg) == (Status.rejected, ["embedded_raster"])
    assert _check(svg, reject_embedded_raster=False) == (Status.ok, ["embedded_raster"])
    bmp = h.image_href("data:;base64," + _b64(_png(kind="BMP")))
    assert _check(bmp, reject_embedded_raster=False) == (Status.rejected, ["data_uri"])


def test_prefixed_root_must_be_bound_to_the_svg_namespace() -> None:
    good = (
        '<svg:svg xmlns:svg="http://www.w3.org/2000/svg" viewBox="0 0 4 4"><svg:rect width="4" height="4"/></svg:svg>'
    )
    assert _check(good) == (Status.ok, [])
    assert _check(good.replace("2000/svg", "2000/not-svg")) == (Status.parse_error, ["not_svg"])
