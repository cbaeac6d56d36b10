"""A real Kamailio as the SIP side of a UC platform, for the trunk tests and benchmark.

`UcPlatform.start` writes a configuration from ``uc_platform.cfg`` into a temporary directory,
a db_text database (Debian's empty tables) whose subscribers are the platform's users and
sip2uc's gateway account, and free ports; it starts ``kamailio`` in the foreground and returns
once the server answers OPTIONS. `stop` ends it; `start` again brings it back on the same ports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


def _presence_server() -> ModuleType:
    """presence_server.py beside this file (its launcher plumbing is shared)."""
    name = "sip2uc_kamailio_presence_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("presence_server.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_base: Any = _presence_server()
free_port = _base.free_port


def missing() -> str | None:
    """Why the platform cannot be started here, or None."""
    if not Path(_base.KAMAILIO).exists():
        return "kamailio is not installed (Debian kamailio)"
    for module in ("auth_db", "registrar", "usrloc", "db_text"):
        if not (_base.MODULES / f"{module}.so").exists():
            return f"Kamailio's {module} module is missing (Debian kamailio)"
    if not _base.DBTEXT.exists():
        return "Kamailio's db_text tables are missing (Debian kamailio)"
    return None


def missing_tls() -> str | None:
    """Why the platform cannot be started with TLS here, or None."""
    if not (_base.MODULES / "tls.so").exists():
        return "Kamailio's TLS module is not installed (Debian kamailio-tls-modules)"
    return missing()


TEMPLATE = Path(__file__).with_name("uc_platform.cfg")
REALM = "uc.example.com"
GATEWAY_USER = "sip2uc-gw"
GATEWAY_PASSWORD = "gw-trunk-secret-9"
#: Numbers behind the gateway, as the platform dials them (E.164 digits).
GATEWAY_PREFIX = "4989"


@dataclass
class UcPlatform(_base.KamailioPresence):  # type: ignore[misc]
    """The launcher of presence_server.py with this configuration and its users."""

    gateway_port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    failing_port: int = field(default_factory=free_port)

    def start(self) -> UcPlatform:
        self.work.mkdir(parents=True, exist_ok=True)
        db = self.work / "db"
        if db.exists():
            shutil.rmtree(db)
        shutil.copytree(_base.DBTEXT, db)
        rows = {GATEWAY_USER: GATEWAY_PASSWORD, **self.users}
        with (db / "subscriber").open("a") as table:
            for i, (user, password) in enumerate(sorted(rows.items()), start=1):
                # db_text takes an empty column for NULL, which these columns refuse.
                ha1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()
                ha1b = hashlib.md5(f"{user}@{REALM}:{REALM}:{password}".encode()).hexdigest()
                table.write(f"{i}:{user}:{REALM}:{password}:{ha1}:{ha1b}\n")
        tls_cfg = self._tls_config()
        text = TEMPLATE.read_text()
        for name, value in {
            "CHILDREN": self.children,
            "UDP_PORT": self.udp_port,
            "TCP_PORT": self.tcp_port,
            "TLS_PORT": self.tls_port,
            "FAILING_PORT": self.failing_port,
            "TLS_CFG": tls_cfg,
            "DB_DIR": db,
            "GATEWAY_PORT": self.gateway_port,
            "GATEWAY_USER": GATEWAY_USER,
            "GATEWAY_PREFIX": GATEWAY_PREFIX,
        }.items():
            text = text.replace(f"@@{name}@@", str(value))
        cfg = self.work / "uc_platform.cfg"
        cfg.write_text(text)
        self._launch(cfg)
        return self
