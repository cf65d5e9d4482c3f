"""Sans-I/O SASL: mechanism choice, exact initial responses, error challenges and replies."""

from __future__ import annotations

import base64
import json

import pytest

from maild.auth import sasl
from maild.errors import ProtocolError


def test_imap_mechanisms_read_auth_atoms_case_insensitively() -> None:
    """AUTH= atoms become upper-cased mechanism names; other atoms are ignored."""
    caps = ["IMAP4rev1", "SASL-IR", "auth=plain", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "AUTH="]
    assert sasl.imap_mechanisms(caps) == {"PLAIN", "XOAUTH2", "OAUTHBEARER"}
    assert sasl.imap_sasl_ir(caps)
    assert not sasl.imap_sasl_ir(["IMAP4rev1", "AUTH=PLAIN"])


def test_pop3_mechanisms_read_the_sasl_capa_line() -> None:
    """CAPA's SASL parameters are the mechanisms; no SASL line means none."""
    assert sasl.pop3_mechanisms({"SASL": ("PLAIN", "login", "XOAUTH2")}) == {"PLAIN", "LOGIN", "XOAUTH2"}
    assert sasl.pop3_mechanisms({"USER": ()}) == frozenset()


@pytest.mark.parametrize(
    ("offered", "auth", "forced", "expected"),
    [
        ({"PLAIN", "LOGIN"}, "password", None, "PLAIN"),
        ({"LOGIN"}, "password", None, None),
        ({"PLAIN", "XOAUTH2", "OAUTHBEARER"}, "oauth2", None, "OAUTHBEARER"),
        ({"PLAIN", "XOAUTH2"}, "oauth2", None, "XOAUTH2"),
        ({"PLAIN"}, "oauth2", None, None),
        ({"PLAIN", "XOAUTH2", "OAUTHBEARER"}, "oauth2", "xoauth2", "XOAUTH2"),
        ({"PLAIN", "XOAUTH2"}, "oauth2", "PLAIN", "PLAIN"),
        ({"PLAIN"}, "oauth2", "OAUTHBEARER", None),
        ({"plain"}, "password", "LOGIN", None),
    ],
)
def test_choose_mechanism(
    offered: set[str], auth: sasl.AuthMethod, forced: str | None, expected: str | None
) -> None:
    """Password logins use PLAIN when offered; tokens prefer OAUTHBEARER; a forced one only if offered."""
    assert sasl.choose_mechanism(offered, auth, forced) == expected


def test_plain_initial_response_bytes() -> None:
    """PLAIN is NUL user NUL password with no authorization identity (RFC 4616 section 2)."""
    raw = sasl.initial_response("PLAIN", "anna", "pässwort", host="h", port=1)
    assert raw == b"\x00anna\x00p\xc3\xa4sswort"


def test_xoauth2_initial_response_bytes() -> None:
    """XOAUTH2 is user=, ^A, auth=Bearer token, ^A^A; base64 matches Google's documented example."""
    raw = sasl.initial_response(
        "XOAUTH2", "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", host="h", port=1
    )
    assert (
        raw
        == b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
    )
    assert base64.b64encode(raw) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRH"
        b"RXVZMjl0Q2cBAQ=="
    )


def test_oauthbearer_initial_response_bytes() -> None:
    """OAUTHBEARER: GS2 header n,a=user, then kvsep-separated host, port, auth (RFC 7628 section 4.1)."""
    raw = sasl.initial_response(
        "OAUTHBEARER",
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    assert raw == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    # The RFC 7628 section 4.1 example, byte for byte.
    assert base64.b64encode(raw) == (
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmd"
        b"DRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )


def test_oauthbearer_escapes_comma_and_equals_in_the_gs2_authzid() -> None:
    """',' and '=' in the user name become =2C and =3D (RFC 5801 section 4 saslname)."""
    raw = sasl.initial_response("OAUTHBEARER", "a,b=c", "t", host="h", port=110)
    assert raw.startswith(b"n,a=a=2Cb=3Dc,\x01")


@pytest.mark.parametrize("bad", ["a\x00b", "a\rb", "a\nb", "a\x01b"])
@pytest.mark.parametrize("mechanism", sasl.MECHANISMS)
def test_structure_characters_are_refused_without_echo(mechanism: sasl.Mechanism, bad: str) -> None:
    """A NUL, CR, LF or ^A in the user or secret is refused; the error does not contain the value."""
    with pytest.raises(ValueError, match="contains") as info:
        sasl.initial_response(mechanism, "anna", bad + "SECRET", host="h", port=1)
    assert "SECRET" not in str(info.value)
    with pytest.raises(ValueError, match="contains"):
        sasl.initial_response(mechanism, bad, "t", host="h", port=1)


def test_encode_response_empty_is_equals_sign() -> None:
    """An empty initial response is sent as '=' (RFC 4959 section 3, RFC 5034 section 4)."""
    assert sasl.encode_response(b"") == b"="
    assert sasl.encode_response(b"\x01") == b"AQ=="


def test_decode_challenge_rejects_non_base64_and_oversize() -> None:
    """Malformed or oversized challenges are ProtocolErrors citing RFC 5034."""
    assert sasl.decode_challenge(b"") == b""
    assert sasl.decode_challenge(b" e30= ") == b"{}"
    with pytest.raises(ProtocolError, match="not base64"):
        sasl.decode_challenge(b"!!!")
    with pytest.raises(ProtocolError, match="too long"):
        sasl.decode_challenge(b"A" * (sasl.MAX_CHALLENGE_OCTETS * 2))


def _b64json(obj: object) -> bytes:
    return base64.b64encode(json.dumps(obj).encode())


def test_parse_error_status_reads_status_and_scope() -> None:
    """The JSON members status and scope are read; token_rejected is true for invalid/expired."""
    status = sasl.parse_error_status(b'{"status":"invalid_token","schemes":"bearer","scope":"mail"}')
    assert status == sasl.ErrorStatus("invalid_token", "mail", "bearer")
    assert status.token_rejected
    assert status.render() == "status=invalid_token scope=mail"
    assert sasl.ErrorStatus("400").token_rejected
    assert sasl.ErrorStatus("401").token_rejected
    assert not sasl.ErrorStatus("insufficient_scope").token_rejected
    assert sasl.parse_error_status(b"not json") is None
    assert sasl.parse_error_status(b"[1]") is None
    assert sasl.parse_error_status(b"\xff") is None
    assert sasl.parse_error_status(b'{"status": 401}') == sasl.ErrorStatus("401")


def test_xoauth2_error_challenge_is_answered_with_an_empty_line() -> None:
    """XOAUTH2: the JSON error challenge gets an empty reply and is kept in .error."""
    ex = sasl.ClientExchange("XOAUTH2", "anna", "TOKEN", host="h", port=1)
    ex.initial_line()
    assert ex.answer(_b64json({"status": "401", "schemes": "bearer"})) == b""
    assert ex.error is not None
    assert ex.error.status == "401"
    assert ex.answer(_b64json({"status": "401"})) == b"*"  # a second challenge: cancel


def test_oauthbearer_error_challenge_is_answered_with_0x01() -> None:
    """OAUTHBEARER: the error challenge gets the dummy %x01, base64 AQ== (RFC 7628 section 3.2.3)."""
    ex = sasl.ClientExchange("OAUTHBEARER", "anna", "TOKEN", host="h", port=1)
    ex.initial_line()
    assert ex.answer(_b64json({"status": "invalid_token"})) == b"AQ=="
    assert ex.error == sasl.ErrorStatus("invalid_token")


def test_empty_challenge_before_the_initial_response_asks_for_it() -> None:
    """Without SASL-IR the server's empty '+' asks for the initial response."""
    ex = sasl.ClientExchange("PLAIN", "anna", "pw", host="h", port=1)
    assert ex.answer(b"") == base64.b64encode(b"\x00anna\x00pw")
    assert ex.answer(b"") == b"*"


def test_unexpected_challenges_are_cancelled() -> None:
    """PLAIN with a non-empty challenge, or a non-JSON challenge to a token mechanism: '*'."""
    plain = sasl.ClientExchange("PLAIN", "anna", "pw", host="h", port=1)
    plain.initial_line()
    assert plain.answer(base64.b64encode(b"what")) == b"*"
    xo = sasl.ClientExchange("XOAUTH2", "anna", "t", host="h", port=1)
    xo.initial_line()
    assert xo.answer(base64.b64encode(b"no json")) == b"*"
    assert xo.error is None


def test_secrets_cover_every_wire_form_and_redact_removes_them() -> None:
    """The base64 initial response (padded or not) and the secret itself are redacted."""
    ex = sasl.ClientExchange("XOAUTH2", "anna", "SENTINEL-TOKEN", host="h", port=1)
    line = ex.initial_line().decode()
    text = f"-ERR echo {line} and SENTINEL-TOKEN and {line.rstrip('=')}"
    cleaned = sasl.redact(text, ex.secrets())
    assert "SENTINEL-TOKEN" not in cleaned
    assert line.rstrip("=") not in cleaned
    assert "SENTINEL" not in repr(ex)
