"""Registers, logs in and inspects devices with matrix-nio, a real Matrix client library.

Usage: python3 nio_smoke.py BASE_URL USERNAME PASSWORD
Prints one JSON object describing what the client saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys

from nio import AsyncClient, LoginResponse, RegisterResponse, WhoamiResponse, DevicesResponse, LogoutResponse


async def main(base_url: str, username: str, password: str) -> dict:
    result = {}
    client = AsyncClient(base_url, username)
    try:
        registered = await client.register(username, password, device_name="nio register")
        if not isinstance(registered, RegisterResponse):
            raise SystemExit(f"register failed: {registered}")
        result["registered_user_id"] = registered.user_id

        login_client = AsyncClient(base_url, username)
        logged_in = await login_client.login(password, device_name="nio login")
        if not isinstance(logged_in, LoginResponse):
            raise SystemExit(f"login failed: {logged_in}")
        result["login_user_id"] = logged_in.user_id
        result["login_device_id"] = logged_in.device_id

        whoami = await login_client.whoami()
        if not isinstance(whoami, WhoamiResponse):
            raise SystemExit(f"whoami failed: {whoami}")
        result["whoami_user_id"] = whoami.user_id

        devices = await login_client.devices()
        if not isinstance(devices, DevicesResponse):
            raise SystemExit(f"devices failed: {devices}")
        result["device_names"] = sorted(d.display_name for d in devices.devices)

        logged_out = await login_client.logout()
        if not isinstance(logged_out, LogoutResponse):
            raise SystemExit(f"logout failed: {logged_out}")
        await login_client.close()
    finally:
        await client.close()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))))
