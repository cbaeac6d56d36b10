"""A throwaway OpenLDAP server on 127.0.0.1 for import tests and benchmarks.

The data is loaded offline with ``slapadd`` (much faster than LDAP adds), then ``slapd`` serves
plain LDAP (for StartTLS) and LDAPS on free loopback ports with a certificate made here by a
throwaway CA, so clients can verify it by that CA file.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .ldif import BASE_DN, SERVICE_DN, SERVICE_PASSWORD

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
HERE = Path(__file__).resolve().parent
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-secret-for-tests"
START_TIMEOUT = 20.0


@dataclass
class SlapdServer:
    workdir: Path
    ldap_port: int
    ldaps_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    base_dn: str = BASE_DN
    root_dn: str = ROOT_DN
    root_password: str = ROOT_PASSWORD
    service_dn: str = SERVICE_DN
    service_password: str = SERVICE_PASSWORD

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_slapd(workdir: Path, ldif: str) -> SlapdServer:
    """Load ``ldif`` into a new database under ``workdir`` and start slapd on it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    ca_file, cert_file, key_file = _write_certificates(workdir)
    config = workdir / "slapd.conf"
    template = Template((HERE / "slapd.conf.template").read_text())
    config.write_text(
        template.substitute(
            schema=HERE / "ad-lync-subset.schema",
            workdir=workdir,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            base_dn=BASE_DN,
            root_dn=ROOT_DN,
            root_password=ROOT_PASSWORD,
            service_dn=SERVICE_DN,
        )
    )
    data = workdir / "data.ldif"
    data.write_text(ldif, encoding="utf-8")
    subprocess.run(
        [str(SLAPADD), "-q", "-f", str(config), "-l", str(data)],
        check=True,
        capture_output=True,
    )
    ldap_port, ldaps_port = _free_port(), _free_port()
    log = (workdir / "slapd.log").open("wb")
    process = subprocess.Popen(
        [
            str(SLAPD),
            "-f",
            str(config),
            "-h",
            f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/",
            "-d",
            "0",  # stay in the foreground so the process can be stopped by its handle
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = SlapdServer(workdir, ldap_port, ldaps_port, ca_file, process)
    try:
        _wait_listening(process, [ldap_port, ldaps_port], workdir / "slapd.log")
    except BaseException:
        server.stop()
        raise
    return server


def _wait_listening(process: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited with {process.returncode}: {log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"slapd did not listen on {pending} within {START_TIMEOUT} s")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                pending.pop(0)
        except OSError:
            time.sleep(0.02)  # polling for the listener, not synchronising on elapsed time


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _write_certificates(workdir: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sip2uc test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file
