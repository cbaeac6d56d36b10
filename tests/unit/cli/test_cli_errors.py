from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from sip2uc.client import describe_rpc_error, discover_token, is_loopback


class FakeRpcError(grpc.RpcError):
    """What a failed call raises: an RpcError that is also a grpc.Call."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._code = code
        self._details = details
        self._trailing = tuple(trailing)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing


def with_status(code: grpc.StatusCode, message: str, *details: Any) -> FakeRpcError:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return FakeRpcError(code, message, [("grpc-status-details-bin", status.SerializeToString())])


def test_field_violations_name_the_field() -> None:
    err = with_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid argument: user.e164: must be E.164 like +4989123456",
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="user.e164", description="must be E.164 like +4989123456"
                )
            ]
        ),
    )
    assert describe_rpc_error(err).message == (
        "invalid argument: field 'user.e164': must be E.164 like +4989123456"
    )


def test_several_violations_are_joined_on_one_line() -> None:
    err = with_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid argument",
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="a", description="bad"),
                error_details_pb2.BadRequest.FieldViolation(field="b", description="worse"),
            ]
        ),
    )
    assert describe_rpc_error(err).message == "invalid argument: field 'a': bad; field 'b': worse"


def test_duplicate_extension_says_already_exists() -> None:
    err = with_status(
        grpc.StatusCode.ALREADY_EXISTS,
        "extension '456' already exists (held by users/1)",
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="user.extension", description="'456' is already used by users/1"
                )
            ]
        ),
    )
    assert describe_rpc_error(err).message == (
        "already exists: field 'user.extension': '456' is already used by users/1"
    )


def test_plain_status_keeps_the_server_message() -> None:
    err = FakeRpcError(grpc.StatusCode.NOT_FOUND, "user '999' not found")
    assert describe_rpc_error(err).message == "not found: user '999' not found"


def test_precondition_failure_lists_violations() -> None:
    err = with_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "cannot delete",
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="STATE", subject="users/1", description="user is in a call"
                )
            ]
        ),
    )
    assert describe_rpc_error(err).message == "failed precondition: users/1: user is in a call"


def test_connection_refused_suggests_starting_the_control_plane() -> None:
    err = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
        "Failed to connect to remote host: Connection refused",
    )
    description = describe_rpc_error(err, "127.0.0.1:1")
    assert description.message == (
        "cannot reach the control plane at 127.0.0.1:1: is `sip2uc up` running?"
    )
    assert description.unreachable


def test_certificate_failure_points_at_the_tls_options() -> None:
    err = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:50051: "
        "Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL routines:"
        "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
    )
    assert describe_rpc_error(err, "10.0.0.1:50051").message == (
        "TLS with the control plane at 10.0.0.1:50051 failed: check --tls/--no-tls and --ca-file"
    )


def test_unavailable_from_the_server_itself_is_shown_as_is() -> None:
    err = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "no sidecar serves users/1")
    description = describe_rpc_error(err, "127.0.0.1:50051")
    assert description.message == "unavailable: no sidecar serves users/1"
    assert not description.unreachable


def test_default_unimplemented_text_is_replaced() -> None:
    err = FakeRpcError(
        grpc.StatusCode.UNIMPLEMENTED,
        "Unexpected <class 'NotImplementedError'>: Method not implemented!",
    )
    assert describe_rpc_error(err).message == "not implemented by this control plane yet"


def test_unauthenticated_says_where_the_token_comes_from() -> None:
    err = FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
    assert describe_rpc_error(err).message.startswith(
        "unauthenticated: invalid bearer token (pass --token or set SIP2UC_TOKEN;"
    )


def test_undecodable_details_fall_back_to_the_message() -> None:
    err = FakeRpcError(
        grpc.StatusCode.INTERNAL, "boom", [("grpc-status-details-bin", b"\xff\xff\xff")]
    )
    assert describe_rpc_error(err).message == "internal: boom"


@pytest.mark.parametrize(
    ("target", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.1.2.3", True),
        ("localhost:1", True),
        ("[::1]:50051", True),
        ("10.0.0.1:50051", False),
        ("control.example.com", False),
        ("[2001:db8::1]:1", False),
    ],
)
def test_loopback_detection(target: str, loopback: bool) -> None:
    assert is_loopback(target) is loopback


def test_explicit_token_wins(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("from-file\n")
    env = {"SIP2UC_TOKEN": "from-env"}
    assert discover_token("explicit", "127.0.0.1:50051", tmp_path, env) == "explicit"
    assert discover_token(None, "127.0.0.1:50051", tmp_path, env) == "from-env"


def test_token_file_is_read_for_loopback_only(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("from-file\n")
    assert discover_token(None, "127.0.0.1:50051", tmp_path, {}) == "from-file"
    assert discover_token(None, "10.0.0.1:50051", tmp_path, {}) is None


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("t0k3n")
    env = {"SIP2UC_DATA_DIR": str(tmp_path)}
    assert discover_token(None, "localhost:50051", None, env) == "t0k3n"


def test_missing_token_file_means_no_token(tmp_path: Path) -> None:
    assert discover_token(None, "127.0.0.1:50051", tmp_path, {}) is None
