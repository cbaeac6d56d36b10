"""REGISTERs on the RegisterStream: the control plane verifies digest against HA1 and keeps
bindings."""

from __future__ import annotations

import itertools

import grpc
from sip2uc.v1 import (
    common_pb2,
    presence_pb2,
    presence_pb2_grpc,
    registrations_pb2,
    registrations_pb2_grpc,
    sidecar_pb2,
    sidecar_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_core.sip.digest import Algorithm, compute_ha1, compute_response

from .sidecar_session import register_once

REALM = "sip2uc"  # the default realm


async def make_alice(channel: grpc.aio.Channel) -> None:
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                sip_uri="sip:alice@example.com",
                extension="456",
                devices=[
                    users_pb2.Device(registering=users_pb2.RegisteringDevice(password="s3cret-pw"))
                ],
            )
        )
    )


def creds(
    password: str, *, username: str = "456", algorithm: str = "MD5", nc: int = 1
) -> sidecar_pb2.DigestCredentials:
    alg = Algorithm.parse(algorithm)
    ha1 = compute_ha1(alg, username, REALM, password)
    nonce, uri, cnonce, nc_text = "n0nce", "sip:example.com", "c1", f"{nc:08x}"
    response = compute_response(
        alg, ha1, nonce=nonce, method="REGISTER", uri=uri, qop="auth", nc=nc_text, cnonce=cnonce
    )
    return sidecar_pb2.DigestCredentials(
        username=username,
        realm=REALM,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=cnonce,
        nc=nc_text,
        qop="auth",
        method="REGISTER",
    )


_cseqs = itertools.count(1)


def register(
    c: sidecar_pb2.DigestCredentials,
    *contacts: tuple[str, int],
    remove_all: bool = False,
    cseq: int | None = None,
) -> sidecar_pb2.RegisterRequest:
    """A REGISTER on one Call-ID; each gets the next CSeq unless `cseq` is given."""
    return sidecar_pb2.RegisterRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar="vlan10",
            source=common_pb2.SocketAddress(host="10.0.0.7", port=40123),
            transport=common_pb2.TRANSPORT_UDP,
            user_agent="DECT base 1.0",
            call_id="reg-1@10.0.0.7",
        ),
        credentials=c,
        aor="sip:456@example.com",
        contacts=[sidecar_pb2.ContactBinding(uri=u, expires=e) for u, e in contacts],
        remove_all=remove_all,
        cseq=next(_cseqs) if cseq is None else cseq,
    )


async def test_md5_and_sha256_credentials_bind_and_report_remaining_expiry(
    channel: grpc.aio.Channel,
) -> None:
    await make_alice(channel)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    for algorithm in ("MD5", "SHA-256"):
        resp = await register_once(
            stub, register(creds("s3cret-pw", algorithm=algorithm), ("sip:456@10.0.0.7:5060", 600))
        )
        assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_OK, algorithm
        assert [(b.uri, b.expires) for b in resp.bindings] == [("sip:456@10.0.0.7:5060", 600)]
    regs = await registrations_pb2_grpc.RegistrationServiceStub(channel).ListRegistrations(
        registrations_pb2.ListRegistrationsRequest(user="456")
    )
    (reg,) = regs.registrations
    assert (reg.source.host, reg.source.port, reg.transport, reg.sidecar) == (
        "10.0.0.7",
        40123,
        common_pb2.TRANSPORT_UDP,
        "vlan10",
    )


async def test_wrong_password_and_unknown_user_look_the_same(channel: grpc.aio.Channel) -> None:
    await make_alice(channel)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    wrong = await register_once(stub, register(creds("guess"), ("sip:456@10.0.0.7", 600)))
    unknown = await register_once(
        stub, register(creds("guess", username="999"), ("sip:999@10.0.0.7", 600))
    )
    assert wrong == unknown
    assert wrong.outcome == sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED


async def test_too_brief_expiry_is_423_with_min_expires(channel: grpc.aio.Channel) -> None:
    await make_alice(channel)
    resp = await register_once(
        sidecar_pb2_grpc.SidecarServiceStub(channel),
        register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 5)),
    )
    assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF
    assert resp.min_expires == 60


async def test_binding_limit_per_device(channel: grpc.aio.Channel) -> None:
    await make_alice(channel)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    contacts = [(f"sip:456@10.0.0.{n}", 600) for n in range(1, 7)]
    resp = await register_once(stub, register(creds("s3cret-pw"), *contacts))
    assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS


async def test_presence_follows_first_and_last_binding(channel: grpc.aio.Channel) -> None:
    await make_alice(channel)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)

    async def availability() -> int:
        return (
            await presence.GetPresence(presence_pb2.GetPresenceRequest(user="456"))
        ).presence.availability

    await register_once(
        stub, register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600), ("sip:456@10.0.0.8", 600))
    )
    assert await availability() == common_pb2.AVAILABILITY_AVAILABLE
    await register_once(stub, register(creds("s3cret-pw", nc=2), ("sip:456@10.0.0.7", 0)))
    assert await availability() == common_pb2.AVAILABILITY_AVAILABLE  # one binding left
    resp = await register_once(stub, register(creds("s3cret-pw", nc=3), remove_all=True))
    assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_OK and list(resp.bindings) == []
    assert await availability() == common_pb2.AVAILABILITY_OFFLINE


async def test_aor_of_another_user_is_forbidden(channel: grpc.aio.Channel) -> None:
    await make_alice(channel)
    req = register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600))
    req.aor = "sip:boss@example.com"
    resp = await register_once(sidecar_pb2_grpc.SidecarServiceStub(channel), req)
    assert resp.outcome == sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN


async def test_force_unregister_removes_bindings_and_goes_offline(
    channel: grpc.aio.Channel,
) -> None:
    await make_alice(channel)
    await register_once(
        sidecar_pb2_grpc.SidecarServiceStub(channel),
        register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600)),
    )
    regs = registrations_pb2_grpc.RegistrationServiceStub(channel)
    resp = await regs.DeleteRegistration(
        registrations_pb2.DeleteRegistrationRequest(name="456/registrations/-")
    )
    assert resp.removed == 1
    p = await presence_pb2_grpc.PresenceServiceStub(channel).GetPresence(
        presence_pb2.GetPresenceRequest(user="456")
    )
    assert p.presence.availability == common_pb2.AVAILABILITY_OFFLINE


async def test_a_register_with_the_same_call_id_and_no_higher_cseq_changes_nothing(
    channel: grpc.aio.Channel,
) -> None:
    await make_alice(channel)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    contact = "sip:456@10.0.0.7:5060"
    first = await register_once(stub, register(creds("s3cret-pw"), (contact, 600), cseq=10))
    assert first.outcome == sidecar_pb2.REGISTER_OUTCOME_OK
    # RFC 3261 §10.3 step 7: a late REGISTER (CSeq 10 again, then 9) must not touch the binding.
    for late in (10, 9):
        removal = register(creds("s3cret-pw", nc=2), (contact, 0), cseq=late)
        resp = await register_once(stub, removal)
        assert (resp.outcome, resp.reason) == (
            sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER,
            "Out-of-order CSeq",
        )
    wildcard = await register_once(
        stub, register(creds("s3cret-pw", nc=3), remove_all=True, cseq=10)
    )
    assert wildcard.outcome == sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER
    regs = registrations_pb2_grpc.RegistrationServiceStub(channel)
    listed = await regs.ListRegistrations(registrations_pb2.ListRegistrationsRequest(user="456"))
    assert [r.contact_uri for r in listed.registrations] == [contact]
    later = await register_once(stub, register(creds("s3cret-pw", nc=4), (contact, 0), cseq=11))
    assert (later.outcome, list(later.bindings)) == (sidecar_pb2.REGISTER_OUTCOME_OK, [])
