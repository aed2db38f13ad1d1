"""Two matrix-nio clients with real Olm/Megolm crypto talk in an encrypted room.

Usage: python3 nio_e2ee.py BASE_URL STORE_DIR
Each client uploads its device and one-time keys, queries the other's, claims a one-time key,
shares a Megolm session over to-device Olm messages, and decrypts the other's message. Prints
one JSON object with what each client decrypted; exits non-zero on any failure.
"""

import asyncio
import json
import os
import sys

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
)


async def registered(base_url: str, store_dir: str, name: str) -> AsyncClient:
    path = os.path.join(store_dir, name)
    os.makedirs(path, exist_ok=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = AsyncClient(base_url, name, store_path=path, config=config)
    response = await client.register(name, f"{name}-password-1", device_name=f"{name} e2ee")
    if not hasattr(response, "access_token"):
        raise SystemExit(f"register {name} failed: {response}")
    if not client.olm:
        raise SystemExit("nio has no Olm support (pip install 'matrix-nio[e2e]')")
    return client


async def sync_and_keys(client: AsyncClient, timeout: int = 0):
    """One sync plus the key maintenance a real client does after it."""
    response = await client.sync(timeout=timeout, full_state=False)
    if client.should_upload_keys:
        uploaded = await client.keys_upload()
        if not isinstance(uploaded, KeysUploadResponse) or uploaded.signed_curve25519_count == 0:
            raise SystemExit(f"{client.user_id} keys_upload failed: {uploaded}")
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    return response


async def decrypted_text(client: AsyncClient, room_id: str, body: str) -> tuple[list, int]:
    """Syncs until a decrypted text with `body` arrived in the room (bounded). Returns every text
    seen and how many of them arrived encrypted on the wire."""
    seen, encrypted_on_wire = [], 0
    for _ in range(20):
        response = await sync_and_keys(client, timeout=3000)
        room = response.rooms.join.get(room_id)
        if room:
            for event in room.timeline.events:
                if isinstance(event, RoomMessageText):
                    seen.append(event.body)
                    encrypted_on_wire += int(event.decrypted)
                elif isinstance(event, MegolmEvent):
                    raise SystemExit(f"{client.user_id} could not decrypt {event.event_id}")
        if body in seen:
            return seen, encrypted_on_wire
    raise SystemExit(f"{client.user_id} saw only {seen}")


async def main(base_url: str, store_dir: str) -> dict:
    alice = await registered(base_url, store_dir, "e2eealice")
    bob = await registered(base_url, store_dir, "e2eebob")
    try:
        await sync_and_keys(alice)
        await sync_and_keys(bob)

        encryption = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        created = await alice.room_create(name="secret", invite=[bob.user_id], initial_state=[encryption])
        if not isinstance(created, RoomCreateResponse):
            raise SystemExit(f"room_create failed: {created}")
        room_id = created.room_id
        for _ in range(10):
            response = await sync_and_keys(bob, timeout=3000)
            if room_id in response.rooms.invite:
                break
        joined = await bob.join(room_id)
        if not isinstance(joined, JoinResponse):
            raise SystemExit(f"join failed: {joined}")
        await sync_and_keys(alice, timeout=1000)
        await sync_and_keys(bob, timeout=1000)
        if not alice.rooms[room_id].encrypted:
            raise SystemExit("alice does not see the room as encrypted")

        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "secret hello"}, ignore_unverified_devices=True
        )
        if not isinstance(sent, RoomSendResponse):
            raise SystemExit(f"alice send failed: {sent}")
        bob_saw, bob_encrypted = await decrypted_text(bob, room_id, "secret hello")

        sent = await bob.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "secret reply"}, ignore_unverified_devices=True
        )
        if not isinstance(sent, RoomSendResponse):
            raise SystemExit(f"bob send failed: {sent}")
        alice_saw, alice_encrypted = await decrypted_text(alice, room_id, "secret reply")

        return {
            "room_id": room_id,
            "alice_device": alice.device_id,
            "bob_device": bob.device_id,
            "bob_saw": bob_saw,
            "alice_saw": alice_saw,
            "decrypted_count": bob_encrypted + alice_encrypted,
            "alice_knows_bob_device": bob.device_id in alice.device_store[bob.user_id],
        }
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
