"""Helpers for the kiosk browser tests: a real server on 127.0.0.1 in a thread, Chromium's flags, contrast.

The browser is Debian's ``chromium`` driven by Playwright (``executable_path``: no browser download).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.serve.app import ServeOptions, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless as root in a container, with nothing that reaches out to the network.
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@dataclass(frozen=True)
class KioskServeOptions(ServeOptions):
    # Tests reset the page themselves: no idle timer unless a test sets one.
    kiosk_idle_seconds: float = 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerThread:
    """uvicorn serving create_app(options) on 127.0.0.1 in a background thread (stopped by stop())."""

    def __init__(self, options: ServeOptions) -> None:
        import uvicorn

        self.app = create_app(options)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="kiosk-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def relative_luminance(rgb: tuple[float, float, float]) -> float:
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: tuple[float, float, float], background: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# For every visible element with its own text: its colour and the colour behind it, found by
# compositing the background colours of it and its ancestors (the page has no images behind text).
TEXT_COLOURS_JS = """
() => {
  const parse = (css) => {
    const m = css.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
  const behind = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) layers.push(parse(getComputedStyle(e).backgroundColor));
    let colour = [255, 255, 255];
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const out = [];
  for (const element of document.body.querySelectorAll("*")) {
    const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    if (!own || box.width === 0 || box.height === 0 || style.visibility === "hidden") continue;
    if (element.closest(".visually-hidden")) continue;
    const fg = parse(style.color);
    const bg = behind(element);
    out.push({ text: element.textContent.trim().slice(0, 40), tag: element.tagName, id: element.id,
               fg: over(fg, bg), bg, size: parseFloat(style.fontSize), weight: style.fontWeight });
  }
  return out;
}
"""

# Every control: its accessible name as a screen reader gets it (label, aria-label, text content).
CONTROL_NAMES_JS = """
() => [...document.querySelectorAll("button, select, input:not([aria-hidden=true]), a[href]")]
  .filter((e) => e.getClientRects().length > 0)
  .map((e) => ({ id: e.id || e.tagName, name: (e.getAttribute("aria-label")
     || (e.labels && e.labels.length ? [...e.labels].map((l) => l.textContent).join(" ") : "")
     || e.textContent).trim() }))
"""

# The page's cards that leave its margins, and "label" if the answer word leaves its card.
OUTSIDE_MARGINS_JS = """
() => {
  const inside = (element, box) => {
    const r = element.getBoundingClientRect(), b = box.getBoundingClientRect(), s = getComputedStyle(box);
    return r.left >= b.left + parseFloat(s.paddingLeft) - 1 && r.right <= b.right - parseFloat(s.paddingRight) + 1;
  };
  const main = document.querySelector("main");
  const cards = [...main.children].filter((e) => e.getClientRects().length && !inside(e, main));
  const word = inside(document.getElementById("label"), document.getElementById("result")) ? [] : ["label"];
  return cards.map((e) => e.id || e.className).concat(word);
}
"""

FOCUS_STYLE_JS = """
() => { const e = document.activeElement; const s = getComputedStyle(e);
        return { id: e.id || e.tagName, text: (e.textContent || "").trim().slice(0, 30),
                 outline: s.outlineStyle, width: parseFloat(s.outlineWidth) }; }
"""


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: $GVD_TEST_ARTIFACTS if set (CI keeps it), else a pytest temp folder."""
    folder = Path(os.environ.get("GVD_TEST_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
