"""Chart servers on 127.0.0.1 for the tests and the demo: an OCI registry and a Helm repository.

The OCI registry is CNCF Distribution as Debian packages it (``docker-registry``; scripts/setup
unpacks its binary into the cache, no service is installed). The Helm repository is a folder of
packaged charts and the ``index.yaml`` that ``helm repo index`` writes, served by a threaded HTTP
server. Either may speak TLS with a certificate of its own CA (``ca_file``; Go programs such as helm
take it from ``SSL_CERT_FILE``) or plain HTTP, and may require a user name and password
(htpasswd/bcrypt for the registry, HTTP basic auth for the repository), as the servers users run do.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.server
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from devcluster.cluster import cache_root, free_port
from devcluster.pki import ensure_ca, make_serving_cert

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 30.0
SANS = ("IP:127.0.0.1", "DNS:localhost")


class RegistryError(RuntimeError):
    """A chart server could not be started."""


@dataclass(frozen=True)
class Credentials:
    """A user of a chart server."""

    username: str
    password: str

    @staticmethod
    def generate(username: str = "promote") -> Credentials:
        """A user with a fresh random password."""
        return Credentials(username, secrets.token_urlsafe(18))

    def basic(self) -> str:
        """The value of an Authorization header."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def registry_binary() -> Path:
    """Distribution's registry, unpacked by scripts/setup from Debian's package."""
    return cache_root() / "registry" / REGISTRY_BINARY


def _tls(root: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, key) for a server on 127.0.0.1, in root/pki."""
    pki = root / "pki"
    ca = ensure_ca(pki)
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if not crt.exists() or not key.exists():
        crt, key = make_serving_cert(pki, name, f"promote-test-{name}", SANS)
    return ca, crt, key


def _htpasswd(path: Path, users: tuple[Credentials, ...]) -> None:
    """A bcrypt htpasswd file (the only format Distribution reads), with apache2-utils' htpasswd."""
    exe = shutil.which("htpasswd")
    if exe is None:
        raise RegistryError("htpasswd is not installed (apt-get install apache2-utils; scripts/setup does)")
    lines = []
    for user in users:
        out = subprocess.run(
            [exe, "-Bbn", user.username, user.password], capture_output=True, text=True, check=True, timeout=30
        )
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _wait_until_up(url: str, ca_file: Path | None, alive: Any, log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive():
            raise RegistryError(f"the server at {url} exited while starting:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx):
                return
        except urllib.error.HTTPError:
            return  # 401 without credentials: it is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RegistryError(f"the server at {url} did not answer within {START_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class OciRegistry:
    """A running Distribution registry: ``oci://{host}/...`` references."""

    root: Path
    credentials: Credentials | None = None
    # Plain HTTP by default: helm 3 speaks plain HTTP to a registry on a loopback address whatever
    # the server does (as containerd's resolver decides), Helm 4 does with --plain-http.
    tls: bool = False
    port: int = 0
    ca_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """host:port, as `helm registry login` and OCI references name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base of OCI chart references, e.g. f"{url}/charts/podinfo"."""
        return f"oci://{self.host}"

    def start(self) -> OciRegistry:
        """Start it; data lives in root/data, its log in root/registry.log."""
        binary = registry_binary()
        if not binary.exists():
            raise RegistryError(f"{binary} is missing: run scripts/setup (it unpacks Debian's docker-registry)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        tls = ""
        if self.tls:
            self.ca_file, crt, key = _tls(self.root, "registry")
            tls = f"  tls:\n    certificate: {crt}\n    key: {key}\n"
        auth = ""
        if self.credentials is not None:
            _htpasswd(self.root / "htpasswd", (self.credentials,))
            auth = f"auth:\n  htpasswd:\n    realm: promote-test\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n" + tls + auth
        )
        log = self.root / "registry.log"
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                [str(binary), "serve", str(config)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        proc = self._proc
        scheme = "https" if self.tls else "http"
        _wait_until_up(f"{scheme}://{self.host}/v2/", self.ca_file, lambda: proc.poll() is None, log)
        return self

    def stop(self) -> None:
        """Stop it (its data stays in root)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> OciRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _RepoHandler(http.server.SimpleHTTPRequestHandler):
    """Files of the repository folder, behind basic auth when the server has a user."""

    credentials: Credentials | None = None

    def do_GET(self) -> None:
        if not self._authorized():
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if not self._authorized():
            return
        super().do_HEAD()

    def _authorized(self) -> bool:
        if self.credentials is None:
            return True
        if hmac.compare_digest(self.headers.get("Authorization", ""), self.credentials.basic()):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="promote-test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class ChartRepository:
    """A running Helm repository: charts packaged into root/charts, `index.yaml` beside them."""

    root: Path
    credentials: Credentials | None = None
    tls: bool = True
    ca_file: Path | None = None
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def charts_dir(self) -> Path:
        """Where packaged charts and index.yaml go."""
        return self.root / "charts"

    @property
    def url(self) -> str:
        """The repository's URL, as `helm repo add` and an app file's `repo:` take it."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ChartRepository:
        """Serve root/charts on 127.0.0.1."""
        self.charts_dir.mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_RepoHandler,), {"credentials": self.credentials})
        serve = partial(handler, directory=str(self.charts_dir))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), serve)
        server.daemon_threads = True
        if self.tls:
            self.ca_file, crt, key = _tls(self.root, "repository")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(crt), str(key))
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="chart-repository", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the files stay)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ChartRepository:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ca_bundle(path: Path, *ca_files: Path | None) -> Path:
    """A CA bundle of the system's roots and these CAs, for SSL_CERT_FILE (Go reads it instead of the
    system's roots, so they must be in it too)."""
    parts = []
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    with contextlib.suppress(OSError):
        parts.append(system.read_text())
    parts.extend(Path(f).read_text() for f in ca_files if f is not None)
    path.write_text("\n".join(parts))
    return path
