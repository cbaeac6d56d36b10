"""The media sidecar's SIP edge: transports, registrar flow, protections and the control link."""

from sip2uc_core.sip.endpoint import Transport

from .app import Sidecar, install_uvloop
from .config import SidecarConfig

__all__ = ["Sidecar", "SidecarConfig", "Transport", "install_uvloop"]
