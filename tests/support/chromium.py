"""Headless Chromium (Debian's `chromium` package) for tests that assert on what a page renders.

`screenshot` renders a local HTML file to a PNG and opens it with Pillow; `dump_dom` prints the
DOM after the page's scripts ran. Each run gets its own profile folder (two tests, or two
sessions on one machine, never share one), and every way Chromium could reach the network is
shut: no background networking or component updates, every host name resolves to nothing, and
any request would go to a dead proxy on loopback. Only `file://` pages are rendered.

`colour_mask` finds the pixels of one colour (within a tolerance) as a Pillow mask, so a test can
ask where a colour was drawn (`mask.getbbox()`) and how much of it (`count`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

OFFLINE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
    "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
    "--force-device-scale-factor=1",
)


def find() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, *flags: str, timeout: float = 90) -> subprocess.CompletedProcess:
    binary = find()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [binary, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 900):
    """Render `page` in a `width` x `height` window; the screenshot as an RGB Pillow image."""
    from PIL import Image

    out = Path(out)
    out.unlink(missing_ok=True)
    result = _run(page, f"--screenshot={out}", f"--window-size={width},{height}")
    if not out.exists():
        raise AssertionError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")
    with Image.open(out) as image:
        return image.convert("RGB")


def dump_dom(page: Path) -> str:
    """The page's DOM as HTML, after its scripts ran."""
    result = _run(page, "--dump-dom", "--virtual-time-budget=2000")
    if result.returncode != 0 or "<html" not in result.stdout:
        raise AssertionError(f"chromium --dump-dom failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def colour_mask(image, colour: str | tuple[int, int, int], tolerance: int = 6):
    """A mode-"L" mask: 255 where `image`'s pixel is within `tolerance` of `colour` in every channel."""
    from PIL import ImageChops

    rgb = hex_rgb(colour) if isinstance(colour, str) else colour
    bands = [band.point(lambda v, c=c: 255 if abs(v - c) <= tolerance else 0)
             for band, c in zip(image.convert("RGB").split(), rgb)]
    return ImageChops.multiply(ImageChops.multiply(bands[0], bands[1]), bands[2])


def count(mask) -> int:
    """How many pixels a mask from `colour_mask` holds."""
    return mask.histogram()[255]


def dense_bbox(mask, row_at_least: int = 100, col_at_least: int = 10):
    """The box of the rows holding at least `row_at_least` pixels of `mask` and the columns holding
    at least `col_at_least` of them: a block of colour (a table's header band, a timeline's lanes),
    not the odd anti-aliased pixel of text that happens to share its colour. None when none."""
    width, height = mask.size
    rows = [y for y in range(height) if mask.crop((0, y, width, y + 1)).histogram()[255] >= row_at_least]
    if not rows:
        return None
    band = mask.crop((0, min(rows), width, max(rows) + 1))
    cols = [x for x in range(width) if band.crop((x, 0, x + 1, band.size[1])).histogram()[255] >= col_at_least]
    if not cols:
        return None
    return min(cols), min(rows), max(cols) + 1, max(rows) + 1


def red_mask(image, margin: int = 15, spread: int = 30):
    """A mode-"L" mask of the reddish pixels: red above green and blue by `margin` or more, green
    and blue within `spread` of each other (so red, pink and dark red, not amber, orange or brown).
    What a page uses to say "failed" is red; a page where nothing failed has none of it."""
    rgb = image.convert("RGB")
    mask = rgb.convert("L").point(lambda _: 0)
    data = rgb.tobytes()
    pixels = bytes(255 if r >= g + margin and r >= b + margin and abs(g - b) <= spread else 0
                   for r, g, b in zip(data[0::3], data[1::3], data[2::3]))
    mask.frombytes(pixels)
    return mask
