"""The media sidecar's SIP edge: transports, registrar flow, protections and the control link."""

from ..transport.base import TransportKind
from .app import Sidecar, install_uvloop
from .config import SidecarConfig

__all__ = ["Sidecar", "SidecarConfig", "TransportKind", "install_uvloop"]
