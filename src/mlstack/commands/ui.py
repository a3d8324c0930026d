"""`mlstack ui`: open the MLflow UI in the browser (the URL is printed either way)."""

from __future__ import annotations

import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

from mlstack.config import StackConfig
from mlstack.engine import EngineAPI
from mlstack.project.context import require_running
from mlstack.project.reporting import Result


@dataclass(frozen=True)
class UiResult(Result):
    url: str
    opened: bool  # False: no browser here (a server, a container, CI)

    @property
    def output(self) -> str:
        return self.url


def ui(
    config: StackConfig,
    engine: EngineAPI,
    *,
    open_url: Callable[[str], bool] = webbrowser.open,
) -> UiResult:
    """Open the tracking server's UI once it answers; BROWSER picks the browser, as usual."""
    require_running(config, engine, "ui")
    url = config.tracking_uri
    return UiResult(url, bool(open_url(url)))
