#!/usr/bin/env python3
"""apps/chat with real WebSocket clients: what one client says, every
client receives. Usage: test_chat.py PATH/TO/hydra-chat. Exit 77 without
python3-websockets."""
import asyncio
import subprocess
import sys

try:
    import websockets
except ImportError:
    print("skip: python3-websockets missing")
    sys.exit(77)


async def run(port):
    uri = "ws://127.0.0.1:%d/" % port
    a = await websockets.connect(uri)
    b = await websockets.connect(uri)
    # A member joins when its connection opens: say lines until b hears one.
    got_b = None
    for i in range(100):
        await a.send("line %d" % i)
        try:
            got_b = await asyncio.wait_for(b.recv(), 0.2)
            break
        except asyncio.TimeoutError:
            pass
    ok = got_b is not None and got_b.startswith("line ")
    got_a = await asyncio.wait_for(a.recv(), 10)  # the sender hears itself too
    ok = ok and got_a == "line 0"
    await a.close()
    await b.close()
    return ok


def main():
    chat = subprocess.Popen([sys.argv[1], "--port", "0", "--shards", "2"], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = chat.stdout.readline()
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        ok = asyncio.run(run(port))
    finally:
        chat.terminate()
        rc = chat.wait(60)
    print("chat broadcast:", "ok" if ok else "FAILED", "; exit status", rc)
    return 0 if ok and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
