"""The state view in a real headless browser (Debian's chromium and chromium-driver) against a
real `sip2uc up --web-listen`, with SIPp handsets registering and calling through it.

`sip2uc up` runs as a subprocess on ports the kernel picks; the tests read the addresses it
logs. Screenshots of the page go to `$SIP2UC_TEST_ARTIFACTS` when it is set (else the test's
temporary directory) for people to review. Every wait is bounded; SIPp runs with `-m`,
`-timeout ... -timeout_error` and `-nostdin`.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from sip2uc.client import Sip2ucClient, split_target
from sip2uc.v1 import users_pb2
from test_cli_connectors import presence_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
IP = shutil.which("ip") or "/usr/sbin/ip"
SCENARIOS = Path(__file__).resolve().parents[1] / "interop" / "sipp"
CLI = [sys.executable, "-m", "sip2uc.cli"]
DOMAIN = "sip2uc.test"
READY = re.compile(r"sip2uc up: admin API (\S+), SIP UDP (\S+),")
VIEW = re.compile(r"state view on (\S+) ")
STARTUP_SECONDS = 30.0
# What the state view promises: a change on a handset shows in an open page this fast.
LIVE_WITHIN_SECONDS = 1.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="chromium and chromium-driver (Debian) are not installed",
    ),
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

T = TypeVar("T")


# --- sip2uc up ---------------------------------------------------------------------------------


@dataclass
class Up:
    process: subprocess.Popen[str]
    admin: str  # the admin API, HOST:PORT
    sip: str  # the default sidecar's SIP UDP address, HOST:PORT
    url: str  # the state view
    data_dir: Path
    log: list[str]

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def client(self) -> Sip2ucClient:
        return Sip2ucClient(self.admin, token=self.token)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start_up(data_dir: Path, web_listen: str) -> Up:
    """`sip2uc up --web-listen`, once it has logged its state view and its ready line."""
    process = subprocess.Popen(
        [
            *CLI,
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--digest-algorithm",
            "MD5",  # SIPp answers MD5 challenges only
            "--web-listen",
            web_listen,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    url = ""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            pytest.fail("sip2uc up did not report ready:\n" + "".join(log))
        if line is None:
            pytest.fail(f"sip2uc up exited with {process.wait()}:\n" + "".join(log))
        if view := VIEW.search(line):
            url = view.group(1)
        if ready := READY.search(line):
            assert url, "the ready line came before the state view's address:\n" + "".join(log)
            return Up(process, ready.group(1), ready.group(2), url, data_dir, log)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = start_up(tmp_path / "data", "127.0.0.1:0")
    yield running
    assert running.stop() == 0
    assert "Traceback" not in "".join(running.log)


def add_user(up: Up, extension: str, password: str) -> str:
    """Creates a user with one registering handset; returns its resource name."""
    with up.client() as client:
        user = client.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:{extension}@{DOMAIN}",
                    display_name=f"User {extension}",
                    extension=extension,
                    devices=[
                        users_pb2.Device(
                            registering=users_pb2.RegisteringDevice(
                                digest_username=extension, password=password
                            )
                        )
                    ],
                )
            ),
            timeout=10,
        ).user
    name: str = user.name
    return name


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    chosen = os.environ.get("SIP2UC_TEST_ARTIFACTS")
    directory = Path(chosen) if chosen else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    # The HTTPS test serves a self-signed certificate made by `sip2uc up`.
    options.accept_insecure_certs = True
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(probe: Callable[[], T | None], what: str, timeout: float) -> T:
    """Polls `probe` every 20 ms until it returns something other than None, at most `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except WebDriverException:
            value = None  # an element replaced while it was read: read again
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def text_of(driver: WebDriver, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def follows_live(driver: WebDriver) -> None:
    """The page's event stream is open (live.js names the link's state)."""
    wait_for(lambda: text_of(driver, "#link") == "live" or None, "the page to go live", 10)


def screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page, not only the window: the window grows to the page's height first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(1100, min(int(height) + 150, 6000)))
    driver.save_screenshot(str(path))


def row_cells(driver: WebDriver, user: str) -> list[str] | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#presence tr[data-user="{user}"]')
    if not rows:
        return None
    return [cell.text for cell in rows[0].find_elements(By.CSS_SELECTOR, "th, td")]


# --- SIPp handsets -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sipp(
    up: Up,
    tmp: Path,
    scenario: Path,
    row: str,
    *,
    port: int,
    label: str,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    (tmp / f"{label}.csv").write_text(f"SEQUENTIAL\n{row}\n")
    return subprocess.Popen(
        [
            SIPP,
            up.sip,
            "-sf",
            str(scenario),
            "-inf",
            str(tmp / f"{label}.csv"),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(free_port() & ~1),
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp / f"{label}.errors.log"),
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
    )


def finished(process: subprocess.Popen[bytes], tmp: Path, label: str, timeout: float = 40) -> None:
    status = process.wait(timeout=timeout)
    errors = tmp / f"{label}.errors.log"
    log = errors.read_text(errors="replace") if errors.exists() else ""
    assert status == 0, f"SIPp {label} exited {status}:\n{log[-3000:]}"


def register(up: Up, tmp: Path, extension: str, password: str) -> int:
    """Registers `extension` from a fresh port (returned: a callee listens there later)."""
    port = free_port()
    label = f"register-{extension}"
    handset = sipp(
        up,
        tmp,
        SCENARIOS / "register_auth.xml",
        f"{extension};{password};300",
        port=port,
        label=label,
    )
    finished(handset, tmp, label, 30)
    return port


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


# --- tests -------------------------------------------------------------------------------------


def test_a_registering_handset_shows_available_within_a_second(
    up: Up, browser: WebDriver, artifacts: Path, tmp_path: Path
) -> None:
    alice = add_user(up, "456", "alice-secret-1")
    browser.get(up.url)
    follows_live(browser)

    register(up, tmp_path, "456", "alice-secret-1")
    registered = time.monotonic()
    cells = wait_for(
        lambda: c if (c := row_cells(browser, alice)) and c[2] == "available" else None,
        "456 to show as available",
        LIVE_WITHIN_SECONDS,
    )
    shown_after = time.monotonic() - registered
    print(f"456 showed as available {shown_after * 1000:.0f} ms after its REGISTER was answered")
    assert cells[:5] == ["456", f"sip:456@{DOMAIN}", "available", "—", "registration"]
    assert cells[8] == "registered"
    registrations = browser.find_element(By.ID, "registrations").text
    assert "456" in registrations and "SIPp interop" in registrations
    assert "sip:456@127.0.0.1:" in registrations
    screenshot(browser, artifacts / "state-view-registered.png")


def test_a_call_is_listed_with_its_legs_and_moves_to_history_when_it_ends(
    up: Up, browser: WebDriver, artifacts: Path, tmp_path: Path
) -> None:
    users = {
        "456": add_user(up, "456", "alice-secret-1"),
        "457": add_user(up, "457", "bob-secret-22"),
    }
    register(up, tmp_path, "456", "alice-secret-1")
    bob_port = register(up, tmp_path, "457", "bob-secret-22")
    browser.get(up.url)
    follows_live(browser)

    uas = sipp(
        up, tmp_path, SCENARIOS / "calls" / "uas_pcmu.xml", "457", port=bob_port, label="uas"
    )
    wait_for(lambda: port_taken(bob_port) or None, "the callee to listen", 10)
    # The caller plays about 7 s of A-law audio after the answer, then hangs up.
    uac = sipp(
        up,
        tmp_path,
        SCENARIOS / "calls" / "uac_pcma_audio.xml",
        "456;alice-secret-1;457",
        port=free_port(),
        label="uac",
    )

    def connected_call() -> list[str] | None:
        rows = browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr")
        if len(rows) != 1 or "connected" not in rows[0].text:
            return None
        legs = [leg.text for leg in rows[0].find_elements(By.CSS_SELECTOR, "ul.legs > li")]
        return legs if len(legs) == 2 and "answered" in legs[1] else None

    legs = wait_for(connected_call, "the call to show as connected with both legs", 10)
    row = browser.find_element(By.CSS_SELECTOR, "#calls tbody tr").text
    assert row.startswith("456 457 connected")  # the caller, the dialled extension, the state
    # The caller's leg (its handset's INVITE) and the callee's (the INVITE the sidecar sent).
    assert legs[0].startswith("456 on default: ") and "PCMA" in legs[0]
    assert legs[1].startswith("457 on default: answered, PCMU")
    assert "Live calls (1)" in browser.find_element(By.ID, "calls").text
    # Both users' rows changed in place (a row fragment each) to show the call.
    for extension in ("456", "457"):
        wait_for(
            lambda e=extension: (
                True
                if (r := text_of(browser, f'#presence tr[data-user="{users[e]}"]'))
                and "in a call" in r
                else None
            ),
            f"{extension} to show as in a call",
            LIVE_WITHIN_SECONDS,
        )
    screenshot(browser, artifacts / "state-view-call.png")

    finished(uac, tmp_path, "uac")
    finished(uas, tmp_path, "uas", 10)
    ended = time.monotonic()

    def in_history() -> str | None:
        rows = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
        return rows[0].text if rows and "caller hung up" in rows[0].text else None

    history = wait_for(in_history, "the call to move to the history", LIVE_WITHIN_SECONDS)
    print(f"the call showed in the history {(time.monotonic() - ended) * 1000:.0f} ms after BYE")
    assert browser.find_elements(By.CSS_SELECTOR, "#calls tbody tr") == []
    assert "No call in progress." in browser.find_element(By.ID, "calls").text
    assert history.startswith("456 457")
    # The relay measured the caller's audio: the worst stream's figures are shown.
    assert re.search(r"MOS \d\.\d, loss \d+\.\d%, jitter \d+\.\d ms", history), history
    screenshot(browser, artifacts / "state-view-history.png")


def test_a_sidecar_that_leaves_shows_as_lost_with_a_warning(
    up: Up, browser: WebDriver, artifacts: Path, tmp_path: Path
) -> None:
    browser.get(up.url)
    follows_live(browser)
    node = subprocess.Popen(
        [
            *CLI,
            "--control",
            up.admin,
            "--token",
            up.token,
            "sidecar",
            "--name",
            "vlan20",
            "--site",
            "second floor",
            "--sip-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "vlan20"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        row = '#sidecars tr[data-sidecar="vlan20"]'
        joined = wait_for(
            lambda: r if (r := text_of(browser, row)) and "connected" in r else None,
            "vlan20 to show as connected",
            30,
        )
        assert joined.startswith("vlan20 second floor connected")
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    left = wait_for(
        lambda: r if (r := text_of(browser, row)) and " lost " in r else None,
        "vlan20 to show as lost",
        LIVE_WITHIN_SECONDS,
    )
    assert left.startswith("vlan20 second floor lost")
    warning = wait_for(
        lambda: w if (w := text_of(browser, "#warnings tbody tr")) else None,
        "the warning about it",
        LIVE_WITHIN_SECONDS,
    )
    assert "warning sip2uc_control.api.sidecar sidecar vlan20 disconnected" in warning
    assert "Sidecars lost\n1" in browser.find_element(By.ID, "summary").text
    screenshot(browser, artifacts / "state-view-sidecar-lost.png")


# --- a state view off loopback -----------------------------------------------------------------


@pytest.fixture
def outside_address() -> Iterator[str]:
    """An address of this host that is not loopback: the host end of a veth pair into a
    throwaway network namespace (it disappears with the namespace)."""
    if not os.path.exists(IP):
        pytest.skip("iproute2 (ip) is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    namespace = f"s2uw{os.getpid() % 100000}"
    host_end = f"{namespace}h"
    net = f"10.98.{os.getpid() % 250}"

    def ip(*args: str) -> None:
        done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    try:
        ip("netns", "add", namespace)
    except OSError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", "uplink", "netns", namespace)
        ip("addr", "add", f"{net}.1/24", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("-n", namespace, "link", "set", "uplink", "up")
        yield f"{net}.1"
    finally:
        subprocess.run([IP, "netns", "del", namespace], capture_output=True, timeout=10)


def fetch(url: str, cafile: Path, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, Location, body) of a GET that does not follow redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    context = ssl.create_default_context(cafile=str(cafile))
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Location", ""), refused.read().decode()


def test_off_loopback_a_wrong_or_missing_token_is_refused(
    outside_address: str, browser: WebDriver, artifacts: Path, tmp_path: Path
) -> None:
    up = start_up(tmp_path / "data", f"{outside_address}:0")
    try:
        assert up.url.startswith(f"https://{outside_address}:")
        cert = tmp_path / "data" / "web-tls" / "sip-tls-cert.pem"
        host, port = split_target(up.url.removeprefix("https://").rstrip("/"))
        base = f"https://{host}:{port}"

        assert fetch(f"{base}/", cert)[:2] == (303, "/login")
        assert fetch(f"{base}/events", cert)[0] == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert fetch(f"{base}/", cert, wrong)[0] == 401
        assert fetch(f"{base}/events", cert, wrong)[0] == 401
        status, _, body = fetch(f"{base}/", cert, {"Authorization": f"Bearer {up.token}"})
        assert status == 200 and 'id="sidecars"' in body

        browser.get(up.url)
        assert browser.current_url == f"{base}/login"
        browser.find_element(By.ID, "token").send_keys("not-the-token")
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        refused = wait_for(lambda: text_of(browser, ".problem"), "the refusal", 10)
        assert refused == "That is not the admin token."
        assert browser.get_cookies() == []
        assert "Sidecars" not in browser.page_source
        screenshot(browser, artifacts / "state-view-login-refused.png")

        browser.find_element(By.ID, "token").send_keys(up.token)
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        wait_for(lambda: browser.current_url == f"{base}/" or None, "the page after sign-in", 10)
        follows_live(browser)  # the cookie opens the event stream too
        [cookie] = browser.get_cookies()
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
        assert up.token not in cookie["value"]
        sidecar = wait_for(
            lambda: text_of(browser, '#sidecars tr[data-sidecar="default"]'), "the sidecar", 10
        )
        assert "connected" in sidecar
    finally:
        assert up.stop() == 0


# --- UC bridges --------------------------------------------------------------------------------


def connector_cells(driver: WebDriver, name: str) -> list[str] | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#connectors tr[data-connector="{name}"]')
    if not rows:
        return None
    return [cell.text for cell in rows[0].find_elements(By.CSS_SELECTOR, "th, td")]


def cli(up: Up, *args: str) -> None:
    done = subprocess.run(
        [*CLI, "--control", up.admin, "--token", up.token, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(presence_server.missing() is not None, reason=str(presence_server.missing()))
def test_a_configured_uc_bridge_shows_with_its_state_and_goes_when_deleted(
    up: Up, browser: WebDriver, artifacts: Path, tmp_path: Path
) -> None:
    kamailio = presence_server.KamailioPresence(tmp_path / "kamailio", auth=True).start()
    try:
        add_user(up, "456", "alice-secret-1")
        browser.get(up.url)
        follows_live(browser)
        assert "No UC bridge is configured" in browser.find_element(By.ID, "connectors").text

        password = tmp_path / "uc-password"
        password.write_text(presence_server.PASSWORD + "\n")
        password.chmod(0o600)
        cli(
            up,
            "connector",
            "add",
            "sip-presence",
            "kam",
            "--server",
            kamailio.server_uri("tcp"),
            "--username",
            presence_server.USERNAME,
            "--password-file",
            str(password),
        )
        cells = wait_for(
            lambda: c if (c := connector_cells(browser, "kam")) and c[3] == "connected" else None,
            "the bridge to show as connected",
            30,
        )
        assert cells[:3] == ["kam", "SIP presence", kamailio.server_uri("tcp")]
        assert cells[4] == "—"  # no error
        assert cells[6] == "1"  # 456 is mapped: it has a SIP URI
        assert cells[9] != "—"  # the process that runs it
        assert "UC bridges connected\n1" in browser.find_element(By.ID, "summary").text
        screenshot(browser, artifacts / "state-view-uc-bridge.png")

        cli(up, "connector", "delete", "kam")
        wait_for(
            lambda: True if connector_cells(browser, "kam") is None else None,
            "the deleted bridge to leave the page",
            5,
        )
    finally:
        kamailio.stop()


# --- sip2uc web, its own process ---------------------------------------------------------------


def test_sip2uc_web_follows_a_control_plane_from_its_own_process(up: Up, tmp_path: Path) -> None:
    add_user(up, "456", "alice-secret-1")
    view = subprocess.Popen(
        [*CLI, "--control", up.admin, "--token", up.token, "web", "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stderr is not None
        url = ""
        for line in view.stderr:
            if found := VIEW.search(line):
                url = found.group(1)
                break
        assert url.startswith("http://127.0.0.1:"), "sip2uc web did not say where it listens"

        def page() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                text: str = response.read().decode()
                return text

        register(up, tmp_path, "456", "alice-secret-1")
        shown = wait_for(
            lambda: (
                p
                if '<span class="availability available">available</span>' in (p := page())
                else None
            ),
            "456 to show as available",
            10,
        )
        assert '<th scope="row">456</th>' in shown
        assert '<span class="health connected">connected</span>' in shown
    finally:
        view.send_signal(signal.SIGTERM)
        _, rest = view.communicate(timeout=30)
        assert view.returncode == 0, rest
        assert "Traceback" not in rest
