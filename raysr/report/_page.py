"""The page around the sections: style, the before/after slider script, plotly.js inline.

Nothing on the page is fetched: plotly.js is inlined once, images are ``data:``
URIs, fonts are the system's, and the favicon is an empty ``data:`` URI (else a
browser asks for ``/favicon.ico``).
"""

from __future__ import annotations

import html

_STYLE = """
:root { --ok: #2e8b57; --flagged: #e69f00; --error: #c0392b; --skipped: #95a5a6; --line: #dde1e6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; color: #1f2933; background: #f5f7fa; }
header { background: #1f2933; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #cbd2d9; font-size: 13px; word-break: break-all; }
nav { padding: 8px 28px; background: #e4e7eb; font-size: 13px; }
nav a { margin-right: 14px; color: #1f2933; }
main { padding: 0 28px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 18px 0; padding: 14px 18px; }
h2 { font-size: 18px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 10px; }
.card { border: 1px solid var(--line); border-left: 5px solid #52606d; border-radius: 4px; padding: 6px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
.card.ok { border-left-color: var(--ok); } .card.flagged { border-left-color: var(--flagged); }
.card.error { border-left-color: var(--error); } .card.skipped { border-left-color: var(--skipped); }
.grid { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { max-width: 640px; white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; font-size: 12px; }
td.uri { max-width: 420px; word-break: break-all; }
.none { color: #7b8794; font-style: italic; }
.status-ok { color: var(--ok); } .status-flagged { color: var(--flagged); } .status-error { color: var(--error); }
.item { border-top: 1px solid var(--line); padding: 12px 0; }
.item h3 { margin-top: 0; word-break: break-all; }
.item .facts { color: #52606d; font-size: 13px; margin-bottom: 8px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: #52606d; margin-top: 2px; }
figure img { display: block; border: 1px solid var(--line); background: #fff; }
img.px { image-rendering: pixelated; }
.placeholder { display: flex; align-items: center; justify-content: center; text-align: center; width: 160px; height: 120px;
               background: repeating-linear-gradient(45deg, #f0f2f5, #f0f2f5 10px, #e4e7eb 10px, #e4e7eb 20px);
               border: 1px dashed #9aa5b1; color: #52606d; font-size: 12px; }
.note { color: var(--error); font-size: 12px; max-width: 520px; word-break: break-all; }
.slider { display: inline-block; }
.slider .stack { position: relative; border: 1px solid var(--line); }
.slider .stack img { position: absolute; left: 0; top: 0; image-rendering: pixelated; }
.slider .stack img.before { clip-path: inset(0 calc(100% - var(--pos, 50%)) 0 0); }
.slider .divider { position: absolute; top: 0; bottom: 0; left: var(--pos, 50%); width: 2px; margin-left: -1px;
                   background: #fff; box-shadow: 0 0 2px #000; pointer-events: none; }
.slider input { display: block; width: 100%; margin: 4px 0 0; }
"""

# Vanilla JS: each slider's range input moves the clip edge of the "before" layer.
_SCRIPT = """
document.querySelectorAll('.slider').forEach(function (slider) {
  var range = slider.querySelector('input[type=range]');
  function update() { slider.style.setProperty('--pos', range.value + '%'); }
  range.addEventListener('input', update);
  update();
});
"""


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, plotly_js: str) -> str:
    """The whole document; ``title``/``subtitle`` are escaped here, ``body`` must already be safe HTML."""
    links = "".join(f'<a href="#{anchor}">{html.escape(text)}</a>' for anchor, text in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        f"<script type=\"text/javascript\">{plotly_js}</script>\n</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>\n"
        f"<nav>{links}</nav>\n<main>\n{body}\n</main>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
