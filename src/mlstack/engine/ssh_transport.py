"""The SDK's ssh transport (the system's `ssh` running `docker system dial-stdio`), closed safely.

docker-py's socket closes by writing two newlines to ssh's stdin before it stops the process.
When the engine has already ended the call (an exec whose output was read to its end), ssh has
exited, the write fails with EPIPE, and a finished call surfaces as a BrokenPipeError: mlstack
reported "not reachable over ssh" for an exec that had worked (25 of 60 execs with 6 callers at
once). Here that failed write is the end it meant, and the process is stopped as the SDK
would. Everything else is the SDK's.
"""

from __future__ import annotations

from typing import Any

from docker.transport import sshconn


class SshSocket(sshconn.SSHSocket):
    def close(self) -> None:
        try:
            super().close()
        except OSError:  # EPIPE: ssh exited with the call it carried; stop it as the SDK would
            if self.proc is not None:
                self.proc.terminate()  # a no-op once it exited (Popen knows)


class _Connection(sshconn.SSHConnection):
    def connect(self) -> None:
        sock = SshSocket(self.ssh_host or "")
        sock.settimeout(self.timeout)
        sock.connect()
        self.sock = sock


class _Pool(sshconn.SSHConnectionPool):
    def _new_conn(self) -> Any:  # the SDK's own is typed the same way (a urllib3 connection)
        seconds: Any = self.timeout  # the SDK's pool keeps the number it was given
        return _Connection(None, seconds, self.ssh_host)


class SshAdapter(sshconn.SSHHTTPAdapter):
    """The SDK's adapter for `ssh://` with the system's ssh client (shell_out), on `SshSocket`."""

    def __init__(self, base_url: str, timeout: int) -> None:
        super().__init__(base_url, timeout, shell_out=True)

    def get_connection(self, url: str | bytes, proxies: Any = None) -> _Pool:
        # as the SDK's with shell_out: a pool per request (each call its own ssh process)
        return _Pool(timeout=self.timeout, maxsize=self.max_pool_size, host=self.ssh_host)
