"""A stand-in for another lab's IOC: writable double PVs named on the command line.

`python ca_source.py PREFIX NAME=VALUE…` serves PREFIX+NAME on loopback and prints `serving`.
"""

from __future__ import annotations

import asyncio
import sys

from caproto import ChannelDouble
from caproto.asyncio.server import Context


async def main(prefix: str, pairs: list[str]) -> None:
    pvdb = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        pvdb[prefix + name] = ChannelDouble(value=float(value), precision=3)
    context = Context(pvdb, ["127.0.0.1"])
    print("serving", flush=True)
    await context.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
