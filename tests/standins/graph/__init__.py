"""A contract stand-in for Microsoft Graph's presence API and its identity platform.

Started by the tests on 127.0.0.1 over HTTPS with a throwaway CA; it checks every request against
Graph's published metadata and documentation and answers like Graph. Nothing here reaches
Microsoft.
"""

from .identity import RegisteredApp
from .server import Fault, GraphStandin, RecordedCall, StandinUser
from .tls import ClientCertificate, StandinTls, make_client_certificate, make_tls

__all__ = [
    "ClientCertificate",
    "Fault",
    "GraphStandin",
    "RecordedCall",
    "RegisteredApp",
    "StandinTls",
    "StandinUser",
    "make_client_certificate",
    "make_tls",
]
