"""The console page: noVNC (fetched from the npm registry, not committed) against the proxy.

Nova's URL convention: ``/vnc_lite.html?path=%3Ftoken%3D...``; the page opens a websocket on the
proxy at ``path``. Without noVNC on disk the page says how to fetch it.
"""

from __future__ import annotations

import html
from pathlib import Path

CONSOLE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>aiostack console</title>
<style>
  body { margin: 0; background: #222; color: #eee; font-family: sans-serif; }
  #status { padding: 4px 8px; height: 20px; }
  #screen { width: 100vw; height: calc(100vh - 28px); }
</style>
<script type="module">
  import RFB from "./novnc/core/rfb.js";
  const path = new URLSearchParams(location.search).get("path") || "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/${path.replace(/^\\//, "")}`;
  const status = document.getElementById("status");
  const rfb = new RFB(document.getElementById("screen"), url, { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => { status.textContent = "Connected"; });
  rfb.addEventListener("disconnect", (e) => {
    status.textContent = e.detail.clean ? "Disconnected"
      : "Refused or lost: a console URL works once and expires; ask for a new one.";
  });
  rfb.addEventListener("credentialsrequired", () => {
    rfb.sendCredentials({ password: prompt("VNC password") || "" });
  });
</script>
</head>
<body><div id="status">Connecting...</div><div id="screen"></div></body>
</html>
"""

MISSING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>aiostack console: noVNC missing</title></head>
<body>
<h1>noVNC is not installed on this console proxy</h1>
<p>The console proxy works, but the browser client (noVNC) is fetched from the npm registry
at build time, not shipped. On the proxy's host run:</p>
<pre>scripts/fetch-novnc.sh {dest}</pre>
<p>then reload this page (your console URL is still unused; it expires after a few minutes).</p>
</body>
</html>
"""


def installed(novnc_dir: Path) -> bool:
    return (novnc_dir / "core" / "rfb.js").is_file()


def missing_page(novnc_dir: Path) -> str:
    return MISSING_PAGE.replace("{dest}", html.escape(str(novnc_dir)))
