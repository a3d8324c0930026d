"""What listens inside each container of a running stack, read from the kernel's socket tables.

Other containers on the stack's network (served models run there too) reach every socket that
is not bound to loopback. Only what the stack uses may be among them: PostgreSQL, MLflow and
S3 (with MinIO also its console, which asks for the root login). SeaweedFS's master, volume
server, filer and admin server answer without credentials, so they listen on loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import struct
import textwrap

import pytest

from .conftest import Project

TCP_LISTEN = "0A"
# The ports that may listen beyond loopback in each container, by storage engine. SeaweedFS's
# S3 gRPC port (8333 + 10000) binds wherever its S3 port binds: weed has no flag to keep it
# on loopback while S3 serves other containers.
EXPECTED = {
    "seaweedfs": {"postgres": {5432}, "storage": {8333, 18333}, "mlflow": {5000}},
    "minio": {"postgres": {5432}, "storage": {9000, 9001}, "mlflow": {5000}},
}
# What `weed mini` opened on every interface before: WebDAV, Iceberg, Lance, filer, master and
# volume server (HTTP and gRPC), admin server (HTTP and its workers' gRPC).
SEAWEEDFS_CLOSED = (7333, 8181, 9101, 8888, 18888, 9333, 19333, 9340, 19340, 23646, 33646)

CONNECT = textwrap.dedent(
    """
    import json, socket, sys
    host, ports, seen = sys.argv[1], [int(p) for p in sys.argv[2:]], {}
    for port in ports:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
            seen[port] = "open"
        except ConnectionRefusedError:
            seen[port] = "refused"
        except OSError as e:
            seen[port] = type(e).__name__
        finally:
            s.close()
    print(json.dumps(seen))
    """
)


def address(hex_address: str) -> str:
    """/proc/net/tcp{,6} addresses: 32-bit words in the host's (little-endian) byte order."""
    words = [int(hex_address[i : i + 8], 16) for i in range(0, len(hex_address), 8)]
    return str(ipaddress.ip_address(b"".join(struct.pack("<I", w) for w in words)))


def is_loopback(text: str) -> bool:
    ip = ipaddress.ip_address(text)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def listeners(table: str) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state in `table` (tcp and tcp6 rows)."""
    found = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0].endswith(":") and fields[3] == TCP_LISTEN:
            host, port = fields[1].split(":")
            found.add((address(host), int(port, 16)))
    return found


def test_socket_table_parsing() -> None:
    table = (
        "  sl  local_address rem_address   st\n"
        "   0: 0100007F:22B8 00000000:0000 0A\n"
        "   1: 00000000:1538 00000000:0000 0A\n"
        "   2: 0200A8C0:1538 0100A8C0:D431 01\n"
        "   0: 00000000000000000000000000000000:208D 00000000000000000000000000000000:0000 0A\n"
        "   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A\n"
    )
    assert listeners(table) == {
        ("127.0.0.1", 8888),
        ("0.0.0.0", 5432),
        ("::", 8333),
        ("::1", 8080),
    }
    assert [is_loopback(a) for a in ("127.0.0.11", "::1", "::ffff:127.0.0.1", "::", "0.0.0.0")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_only_the_stacks_own_ports_listen_beyond_loopback(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = any_project
    code, _, err = project.cli(capsys, "up")
    assert code == 0, err

    report = []
    for service, ports in EXPECTED[project.storage].items():
        container = f"{project.name}-{service}"
        read = "cat /proc/net/tcp; [ ! -e /proc/net/tcp6 ] || cat /proc/net/tcp6"
        code, table = project.engine.exec(container, ["sh", "-c", read])
        assert code == 0, table
        found = listeners(table)
        outside = {(a, p) for a, p in found if not is_loopback(a)}
        inside = sorted(found - outside)  # Docker's DNS (127.0.0.11) among them
        report.append(f"{service}: beyond loopback {sorted(outside)}, loopback only {inside}")
        assert {p for _, p in outside} == ports, report[-1]
        # on every interface, not on one address picked at start
        assert {a for a, _ in outside} <= {"0.0.0.0", "::"}, report[-1]
    print(f"\n{project.storage}: " + "\n".join(report))

    # From another container on the stack's network (MLflow's), what answers on `storage`.
    if project.storage == "seaweedfs":
        probe = [8333, *SEAWEEDFS_CLOSED]
        expected = {8333: "open"} | dict.fromkeys(SEAWEEDFS_CLOSED, "refused")
    else:
        probe = [9000, 9001]
        expected = {9000: "open", 9001: "open"}
    code, out = project.engine.exec(
        f"{project.name}-mlflow", ["python", "-c", CONNECT, "storage", *map(str, probe)]
    )
    assert code == 0, out
    seen = {int(port): state for port, state in json.loads(out.strip().splitlines()[-1]).items()}
    assert seen == expected
