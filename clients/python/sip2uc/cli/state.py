"""What every command shares: the global options and the lazily made client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from sip2uc.client import Sip2ucClient, discover_token

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (the API's field names) instead of tables."),
]


@dataclass
class CliState:
    control: str = "127.0.0.1:50051"
    token: str | None = None
    data_dir: Path = Path("var")
    json: bool = False
    tls: bool | None = None
    ca_file: Path | None = None
    _client: Sip2ucClient | None = field(default=None, repr=False)

    def client(self) -> Sip2ucClient:
        if self._client is None:
            token = discover_token(self.token, self.control, self.data_dir)
            self._client = Sip2ucClient(
                self.control, token=token, tls=self.tls, ca_file=self.ca_file
            )
        return self._client

    def wants_json(self, flag: bool = False) -> bool:
        return flag or self.json

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def get_state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if isinstance(obj, CliState):
        return obj
    # A sub-application invoked on its own (in tests): defaults from the environment.
    state = CliState()
    ctx.find_root().obj = state
    return state


def usage_error(message: str, param_hint: str | None = None) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param_hint)
