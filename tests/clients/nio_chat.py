"""Two matrix-nio clients chat: create a room, invite, join, exchange messages through /sync.

Usage: python3 nio_chat.py BASE_URL
Prints one JSON object with what each client received; exits non-zero on any failure.
"""

import asyncio
import json
import sys

from nio import AsyncClient, InviteMemberEvent, JoinResponse, RoomCreateResponse, RoomMessageText, RoomSendResponse


async def registered(base_url: str, name: str) -> AsyncClient:
    client = AsyncClient(base_url, name)
    response = await client.register(name, f"{name}-password-1", device_name=f"{name} laptop")
    if not hasattr(response, "access_token"):
        raise SystemExit(f"register {name} failed: {response}")
    return client


async def texts_in(client: AsyncClient, room_id: str, want: int) -> list:
    """Syncs until `want` text messages arrived in the room (bounded)."""
    seen = []
    for _ in range(20):
        response = await client.sync(timeout=5000, full_state=False)
        room = response.rooms.join.get(room_id)
        if room:
            seen.extend(e.body for e in room.timeline.events if isinstance(e, RoomMessageText))
        if len(seen) >= want:
            return seen
    raise SystemExit(f"{client.user_id} saw only {seen}")


async def main(base_url: str) -> dict:
    alice = await registered(base_url, "nioalice")
    bob = await registered(base_url, "niobob")
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)

        created = await alice.room_create(name="nio chat", invite=[bob.user_id])
        if not isinstance(created, RoomCreateResponse):
            raise SystemExit(f"room_create failed: {created}")
        room_id = created.room_id

        # Bob learns about the invite through /sync.
        invited = False
        for _ in range(10):
            response = await bob.sync(timeout=5000)
            if room_id in response.rooms.invite:
                invited = any(isinstance(e, InviteMemberEvent) for e in response.rooms.invite[room_id].invite_state)
                break
        if not invited:
            raise SystemExit("bob never saw the invite")

        joined = await bob.join(room_id)
        if not isinstance(joined, JoinResponse):
            raise SystemExit(f"join failed: {joined}")

        sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
        if not isinstance(sent, RoomSendResponse):
            raise SystemExit(f"alice send failed: {sent}")
        bob_saw = await texts_in(bob, room_id, 1)

        sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
        if not isinstance(sent, RoomSendResponse):
            raise SystemExit(f"bob send failed: {sent}")
        alice_saw = await texts_in(alice, room_id, 2)

        members = sorted(alice.rooms[room_id].users.keys()) if room_id in alice.rooms else []
        return {"room_id": room_id, "bob_saw": bob_saw, "alice_saw": alice_saw, "alice_members": members,
                "room_name": alice.rooms[room_id].name if room_id in alice.rooms else None}
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
