"""Connecting to a Ray cluster the way Ray's own clients do, quietly, with errors that name the cause.

Ray (2.5x+) protects clusters with a token: ``ray start --head`` turns it on when a token exists
(``ray get-auth-token --generate`` writes ~/.ray/auth_token). Ray's CLI picks the token up from
RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; a driver given an explicit address
does not, and then retries for 20 s, printing a C++ warning every second. So: when a token is
there and RAY_AUTH_MODE is unset, token mode is switched on before connecting, and a one-call
probe of the cluster's GCS fails in seconds with a line that says "authentication" and the fix.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from harness.errors import PlanError, UsageError

AUTH_HINT = ("use the cluster's token on this machine: print it on the head node with `ray get-auth-token` and "
             "put it in ~/.ray/auth_token here (or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)")


def _token_loader() -> Any:
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return None
    return AuthenticationTokenLoader.instance()


def use_cluster_token() -> str | None:
    """Switch Ray to token mode when a token is available and the user set no mode; the token, or None."""
    loader = _token_loader()
    if loader is None or not loader.has_token(ignore_auth_mode=True):
        return None
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:
        from ray._raylet import Config

        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")  # Ray caches its config; re-read it so this process uses the token
    elif mode.lower() != "token":
        return None
    return str(loader.get_raw_token(ignore_auth_mode=True))


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a wrong address; ray.init retries an unreachable one for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address must be HOST:PORT, e.g. 10.0.0.5:6379 (got {address!r})")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise PlanError(f"no Ray cluster answers at {address} ({e.strerror or e})",
                        hint="start one with `ray start --head --port PORT` and pass its address") from e


def check_auth(address: str, token: str | None, timeout: float = 10.0) -> None:
    """Ask the cluster's GCS for its id once, with our token; an authentication refusal becomes one line."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # Ray's private protocol moved: ray.init reports what goes wrong
        return
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout, metadata=metadata)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise auth_error(address, token) from None
            # Anything else (slow, another protocol): let ray.init try and report.


def auth_error(address: str, token: str | None) -> PlanError:
    why = "its token does not match ours" if token else "it needs a token and this machine has none"
    return PlanError(f"the Ray cluster at {address} refused the connection: authentication failed ({why})",
                     hint=AUTH_HINT)


def connect(address: str | None) -> bool:
    """Connect to the cluster (or start a local one); True when this call did the connecting.

    Raises:
        PlanError: the cluster cannot be reached, or refused us (authentication).
        UsageError: a malformed address.
    """
    import ray

    if ray.is_initialized():
        return False
    explicit = bool(address) and address not in ("auto", "local") and not str(address).startswith("ray://")
    if explicit:
        check_reachable(str(address))
    token = use_cluster_token()
    if explicit:
        check_auth(str(address), token)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    for name in ("ray", "ray._private.worker", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        if isinstance(e, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(e):
            raise auth_error(str(address or "RAY_ADDRESS"), token) from e
        raise PlanError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {e}",
                        hint="start one with `ray start --head`, and pass its address with --address") from e
    return True
