"""The SSRF guard of job callbacks: which addresses are refused, and that the
guard holds at connect time (where a DNS answer may differ from the check)."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from voxgate.errors import RequestError
from voxgate.jobs.webhooks import AllowList, GuardedTransport, check_callback_url, forbidden


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


def test_allow_list_by_host_and_network() -> None:
    allow = AllowList.parse(["hooks.internal", "10.0.5.0/24"])
    assert allow.allows("hooks.internal", ipaddress.ip_address("10.9.9.9"))
    assert allow.allows("other", ipaddress.ip_address("10.0.5.7"))
    assert not allow.allows("other", ipaddress.ip_address("10.0.6.7"))


async def test_a_name_that_resolves_inside_is_refused() -> None:
    with pytest.raises(RequestError) as refused:
        await check_callback_url("http://localhost:8080/hook", AllowList.parse([]))
    assert refused.value.code == "callback_url_forbidden"
    await check_callback_url("http://localhost:8080/hook", AllowList.parse(["localhost"]))


async def test_the_transport_refuses_to_connect_inside() -> None:
    """Even a URL that passed the check earlier cannot be sent inside."""
    async with httpx.AsyncClient(transport=GuardedTransport(AllowList.parse([]))) as client:
        with pytest.raises(httpx.ConnectError, match="internal address"):
            await client.post("http://localhost:9/hook", content=b"{}")
