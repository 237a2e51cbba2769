"""The Dagster UI end to end: ``dagster dev`` on 127.0.0.1 and the asset pages in headless Chromium.

Starts the project's UI the way ``deploy/dev.sh`` does (``dagster dev -w workspace.yaml``) on a
temporary SQLite instance and data root, checks that it listens on the loopback address only,
then drives the asset graph and the partition pages with Playwright. A screenshot of the graph
goes to ``tmp_path``; with ``PERTURB_ASSETS_UPDATE_SCREENSHOTS=1`` a downscaled copy also
replaces ``docs/ui_asset_graph.png`` (off by default, so the tests never dirty the tree).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import psutil
import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from perturb_assets.defs.partitions import register_datasets

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
LOCATION = "perturb_assets"
DOCS_SCREENSHOT = REPO / "docs" / "ui_asset_graph.png"
DOCS_MAX_BYTES = 200_000
START_TIMEOUT_S = 150  # import of the code location + webserver start; slow on a loaded 2-core box
UI_TIMEOUT_MS = 30_000
STOP_TIMEOUT_S = 30
# The groups drawn (expanded) in the graph screenshot: small enough to stay legible.
GRAPH_GROUPS = ("datasets", "metrics", "analyses")
# One asset or more per group, each drawn inside the first viewport: the graph renders only the
# nodes in view, and the analyses group grew past it (diversity_sweep sits off-screen).
GRAPH_ASSETS = ("raw_dataset", "expression", "pseudobulk", "noise_ceiling", "dataset_diversity")

_WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
_PARTITION_KEYS_QUERY = """
query ($key: [String!]!) { assetNodeOrError(assetKey: {path: $key}) {
    __typename ... on AssetNode { partitionKeys } } }
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


class _Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()
        self.http.trust_env = False  # never send loopback requests through a proxy

    def graphql(self, query: str, **variables) -> dict:
        resp = self.http.post(
            f"{self.base}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        resp.raise_for_status()
        return resp.json()

    def alive(self) -> None:
        assert self.proc.poll() is None, (
            f"dagster dev exited with {self.proc.returncode}:\n{_log_tail(self.log)}"
        )


def _default_stop_signals() -> None:
    """Undo an inherited "ignore" of SIGINT/SIGTERM (e.g. from a background shell job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _dagster_dev(tmp_path: Path, env: dict[str, str]) -> Iterator[_Server]:
    """``dagster dev`` in its own session; the whole process group is killed on exit."""
    port = _free_port()
    log = tmp_path / "dagster_dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    # `dagster dev` (1.13) has no switch to leave the daemon out; it shares the code server
    # with the webserver, so it does not load the code location a second time.
    cmd = [str(dagster), "dev", "-w", "workspace.yaml", "--host", "127.0.0.1", "--port", str(port)]
    tree: list[psutil.Process] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )
    try:
        yield _Server(proc, port, log)
    finally:
        with contextlib.suppress(psutil.Error):
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        # Ctrl+C for the whole group: dagster dev stops the webserver, daemon and code server.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _, alive = psutil.wait_procs(tree, timeout=15)
        for leftover in alive:  # e.g. a child that moved to a process group of its own
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        psutil.wait_procs(alive, timeout=10)


def _wait_until_ready(server: _Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        server.alive()
        with contextlib.suppress(requests.RequestException):
            if server.http.get(f"{server.base}/server_info", timeout=5).ok:
                break
        assert time.monotonic() < deadline, f"no webserver after {START_TIMEOUT_S}s:\n" + (
            _log_tail(server.log)
        )
        time.sleep(1)
    while True:
        server.alive()
        workspace = server.graphql(_WORKSPACE_QUERY)["data"]["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = {e["name"]: e for e in workspace["locationEntries"]}
        assert set(entries) == {LOCATION}, entries
        entry = entries[LOCATION]
        if entry["loadStatus"] == "LOADED":
            location = entry["locationOrLoadError"]
            assert location["__typename"] == "RepositoryLocation", location
            return
        assert time.monotonic() < deadline, f"code location not loaded: {entry}\n" + (
            _log_tail(server.log)
        )
        time.sleep(1)


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The (ip, port) of every listening TCP socket of the process and its descendants."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _non_loopback_ipv4() -> list[str]:
    return [
        addr.address
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family == socket.AF_INET and not ipaddress.ip_address(addr.address).is_loopback
    ]


def _assert_loopback_only(server: _Server) -> None:
    sockets = _listening_sockets(server.proc.pid)
    on_port = {ip for ip, port in sockets if port == server.port}
    assert on_port == {"127.0.0.1"}, f"webserver port {server.port} bound to {on_port}"
    assert all(ipaddress.ip_address(ip).is_loopback for ip, _ in sockets), sockets
    for address in _non_loopback_ipv4():  # not reachable from the machine's other addresses
        with pytest.raises(OSError):
            socket.create_connection((address, server.port), timeout=3).close()


def _partition_keys(server: _Server, asset: str) -> list[str]:
    node = server.graphql(_PARTITION_KEYS_QUERY, key=[asset])["data"]["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return node["partitionKeys"]


def _should_show_nux(server: _Server) -> bool:
    """Whether the UI will open with the "Join the Dagster community" dialog."""
    return bool((server.graphql("{ shouldShowNux }").get("data") or {}).get("shouldShowNux"))


def _dismiss_community_dialog(page: Page, server: _Server) -> None:
    if not _should_show_nux(server):
        return
    dialog_title = page.get_by_text("Join the Dagster community", exact=True)
    expect(dialog_title).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("button", name="Skip", exact=True).click()
    expect(dialog_title).to_be_hidden()
    deadline = time.monotonic() + 15  # the UI records the dismissal on the server
    while _should_show_nux(server):
        assert time.monotonic() < deadline, "Skip did not mark the dialog as seen"
        time.sleep(0.5)


def _check_asset_graph(page: Page, server: _Server, shot: Path) -> None:
    selection = " or ".join(f"group:{group}" for group in GRAPH_GROUPS)
    expanded = ",".join(f"global@global:{group}" for group in GRAPH_GROUPS)
    page.goto(f"{server.base}/asset-groups~{quote(selection, safe='')}?expanded={quote(expanded)}")
    expect(page.get_by_text("Global asset lineage", exact=True)).to_be_visible()
    _dismiss_community_dialog(page, server)
    graph = page.locator("svg")
    first = graph.get_by_text(GRAPH_ASSETS[0], exact=True).first
    try:
        expect(first).to_be_visible(timeout=UI_TIMEOUT_MS)
    except AssertionError:  # groups drawn collapsed: the graph's "Expand all groups" shortcut
        page.keyboard.press("Alt+e")
    for asset in GRAPH_ASSETS:
        expect(graph.get_by_text(asset, exact=True).first).to_be_visible()
    # `metrics` is both a group and an asset: the group's header plus the asset's node.
    expect(graph.get_by_text("metrics", exact=True)).to_have_count(2)
    for group in GRAPH_GROUPS:
        expect(page.get_by_title(group, exact=True).first).to_be_visible()  # asset sidebar
    page.wait_for_timeout(1000)  # let edges finish drawing before the screenshot
    page.screenshot(path=str(shot))


def _check_partitions(page: Page, server: _Server, asset: str, key: str) -> None:
    keys = _partition_keys(server, asset)
    assert key in keys, keys
    page.goto(f"{server.base}/assets/{asset}")
    page.get_by_role("tab", name="Partitions", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]view=partitions"))
    plural = "Partition" if len(keys) == 1 else "Partitions"
    expect(page.get_by_text(f"{len(keys)} {plural} Selected", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Missing ({len(keys)})", exact=True)).to_be_visible()
    expect(page.get_by_text(key, exact=True).first).to_be_visible()


def _write_docs_copy(shot: Path) -> None:
    with Image.open(shot) as img:
        small = img.convert("RGB")
        small.thumbnail((1200, 1200), Image.Resampling.LANCZOS)
        small.quantize(colors=128).save(DOCS_SCREENSHOT, optimize=True)
    assert 0 < DOCS_SCREENSHOT.stat().st_size <= DOCS_MAX_BYTES


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dagster_dev_serves_the_asset_graph_and_partitions_on_loopback(tmp_path, monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (deploy/system_deps.sh installs it)")
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PERTURB_ASSETS_DATA_ROOT", str(data))
    with dg.DagsterInstance.get() as instance:  # what dataset_sensor does on its first tick
        register_datasets(instance, ["synthetic"])
    shot = tmp_path / "ui_asset_graph.png"

    with _dagster_dev(tmp_path, dict(os.environ)) as server:
        _wait_until_ready(server)
        _assert_loopback_only(server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--no-proxy-server"]
            )
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(UI_TIMEOUT_MS)
                expect.set_options(timeout=UI_TIMEOUT_MS)
                _check_asset_graph(page, server, shot)
                _check_partitions(page, server, "raw_dataset", "synthetic")
                _check_partitions(page, server, "diversity_sweep", "0.25")
            finally:
                browser.close()
        server.alive()  # the UI session did not bring the server down
        pid = server.proc.pid

    with pytest.raises(ProcessLookupError):  # nothing is left in the server's process group
        os.killpg(pid, 0)
    with Image.open(shot) as img:
        assert img.size == (1600, 1000)
    assert shot.stat().st_size > 10_000
    if os.environ.get("PERTURB_ASSETS_UPDATE_SCREENSHOTS") == "1":
        _write_docs_copy(shot)
