"""The live view's page and its ``--serve [HOST:]PORT`` address (split from server.py, which serves them)."""

from __future__ import annotations

from digitkit.runtime.errors import InferenceError

DEFAULT_HOST = "127.0.0.1"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>digitkit camera</title>
<style>
 body { font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 1em; }
 #reading { font-size: 3em; font-weight: bold; letter-spacing: .08em; }
 .stable { color: #4c4; } .unstable { color: #fa0; }
 img { max-width: 100%; border: 1px solid #444; display: block; margin-top: .5em; }
 small { color: #999; }
</style></head>
<body>
<div>reading: <span id="reading" class="unstable">-</span> <small id="info"></small></div>
<img id="stream" src="stream.mjpg" alt="annotated camera stream">
<script>
const img = document.getElementById("stream");
let shown = 0;  // multipart images fire "load" for every frame that arrives
img.addEventListener("load", () => { shown += 1; document.body.dataset.framesShown = shown; });
async function poll() {
  try {
    const r = await fetch("reading", {cache: "no-store"});
    if (r.ok) {
      const d = await r.json();
      const el = document.getElementById("reading");
      el.textContent = d.text || "-";
      el.className = d.stable ? "stable" : "unstable";
      document.getElementById("info").textContent =
        "frame " + d.frame + (d.stable ? " (stable)" : " (settling)") + ", " + d.latency_ms.toFixed(1) + " ms";
      document.body.dataset.frame = d.frame;
    }
  } catch (e) { /* the camera stopped; keep trying */ }
  document.body.dataset.naturalWidth = img.naturalWidth;
  setTimeout(poll, 250);
}
poll();
</script>
</body></html>
"""


def parse_address(text: str | int) -> tuple[str, int]:
    """``"8080"`` -> ("127.0.0.1", 8080); ``"0.0.0.0:8080"``, ``"[::1]:8080"`` name the host explicitly.

    Raises:
        InferenceError: no valid port (0-65535; 0 = any free port) in ``text``.
    """
    text = str(text).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:  # 0 = any free port
        raise InferenceError(f"--serve {text!r} is not [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)")
    return host, int(port_text)
