"""Credentials for the dev cluster: a private CA, the apiserver's serving certificate, the
service-account signing key pair and the static bearer tokens.

Everything is produced with the ``openssl`` command-line tool so that the harness has no Python
dependency beyond what ``promote`` already needs. All material lives in ``<state>/pki`` and is
reused across ``up --fresh`` so that kubeconfigs handed out earlier keep trusting the cluster.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT = 60

#: Subject alternative names the apiserver is reachable by, from the host and (nominally) in-cluster.
APISERVER_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:10.0.0.1",
)

#: (user, uid, groups) per token-file principal. The admin sits in system:masters so RBAC
#: always lets it through; the controllers get the identities that the bootstrap RBAC policy binds.
PRINCIPALS: dict[str, tuple[str, str, str]] = {
    "admin": ("admin", "admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", "kube-controller-manager", ""),
    "scheduler": ("system:kube-scheduler", "kube-scheduler", ""),
}


class PKIError(RuntimeError):
    """Raised when cluster credentials cannot be generated."""


@dataclass(frozen=True)
class PKI:
    """Paths and tokens of one cluster's credentials."""

    dir: Path
    tokens: dict[str, str]

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.dir / "tokens.csv"


def _openssl(args: list[str], what: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise PKIError(f"cannot {what}: the openssl command is not installed (apt-get install openssl)")
    try:
        subprocess.run([exe, *args], check=True, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise PKIError(f"cannot {what}: openssl {args[0]} failed: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PKIError(f"cannot {what}: openssl {args[0]} timed out") from exc


def _genkey(path: Path, what: str) -> None:
    _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)], what)
    path.chmod(0o600)


def _make_ca(pki_dir: Path) -> None:
    _genkey(pki_dir / "ca.key", "generate the cluster CA key")
    _openssl(
        [
            "req",
            "-x509",
            "-new",
            "-key",
            str(pki_dir / "ca.key"),
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=promote-dev-cluster-ca",
            "-out",
            str(pki_dir / "ca.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ],
        "self-sign the cluster CA",
    )


def _make_apiserver_cert(pki_dir: Path) -> None:
    make_serving_cert(pki_dir, "apiserver", "kube-apiserver", APISERVER_SANS)


def make_serving_cert(pki_dir: Path, name: str, common_name: str, sans: tuple[str, ...]) -> tuple[Path, Path]:
    """(certificate, key) ``<name>.crt``/``<name>.key`` for a server, signed by the CA in ``pki_dir``."""
    key, csr, crt = pki_dir / f"{name}.key", pki_dir / f"{name}.csr", pki_dir / f"{name}.crt"
    ext = pki_dir / f"{name}.ext"
    _genkey(key, f"generate the {common_name} serving key")
    _openssl(
        ["req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(csr)],
        f"create the {common_name} certificate request",
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(sans)}\n"
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki_dir / "ca.crt"),
            "-CAkey",
            str(pki_dir / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        ],
        f"sign the {common_name} serving certificate",
    )
    csr.unlink(missing_ok=True)
    return crt, key


def ensure_ca(pki_dir: Path) -> Path:
    """The CA certificate in ``pki_dir``, made when missing."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    if not (pki_dir / "ca.crt").exists() or not (pki_dir / "ca.key").exists():
        _make_ca(pki_dir)
    return pki_dir / "ca.crt"


def _make_sa_keys(pki_dir: Path) -> None:
    _genkey(pki_dir / "sa.key", "generate the service-account signing key")
    _openssl(
        ["pkey", "-in", str(pki_dir / "sa.key"), "-pubout", "-out", str(pki_dir / "sa.pub")],
        "derive the service-account public key",
    )


def _write_tokens(path: Path) -> dict[str, str]:
    tokens = {role: secrets.token_hex(24) for role in PRINCIPALS}
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.writer(fh)
        for role, (user, uid, groups) in PRINCIPALS.items():
            row = [tokens[role], user, uid]
            if groups:
                row.append(groups)
            writer.writerow(row)
    tmp.replace(path)
    return tokens


def _read_tokens(path: Path) -> dict[str, str]:
    by_user = {user: role for role, (user, _uid, _groups) in PRINCIPALS.items()}
    tokens: dict[str, str] = {}
    with path.open(newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[1] in by_user:
                tokens[by_user[row[1]]] = row[0]
    return tokens


def ensure_pki(pki_dir: Path) -> PKI:
    """Create whatever credentials are missing under ``pki_dir`` and return them.

    Existing files are kept, so restarts and ``--fresh`` keep the CA that clients already trust.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    if not (pki_dir / "ca.crt").exists() or not (pki_dir / "ca.key").exists():
        _make_ca(pki_dir)
        (pki_dir / "apiserver.crt").unlink(missing_ok=True)
    if not (pki_dir / "apiserver.crt").exists() or not (pki_dir / "apiserver.key").exists():
        _make_apiserver_cert(pki_dir)
    if not (pki_dir / "sa.key").exists() or not (pki_dir / "sa.pub").exists():
        _make_sa_keys(pki_dir)
    token_file = pki_dir / "tokens.csv"
    tokens = _read_tokens(token_file) if token_file.exists() else {}
    if set(tokens) != set(PRINCIPALS):
        tokens = _write_tokens(token_file)
    return PKI(dir=pki_dir, tokens=tokens)
