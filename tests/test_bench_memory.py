"""The bench's Redis memory per batch: read with no other connection open, so connections are not counted."""

from __future__ import annotations

from bench import economy
from bench.redis_server import RedisServer


def test_memory_is_read_without_other_connections_and_split_by_family():
    server = RedisServer(appendonly=False).start()
    try:
        client = server.client()
        base = economy._memory_alone(client)
        others = [server.client() for _ in range(20)]
        for i, other in enumerate(others):
            other.hset(f"t:b:{i}", mapping={"doc": "x" * 200, "status": "completed"})
            other.zadd("t:idx:all", {f"batch_{i}": i})
        assert server.info_memory() - base > 20 * 16_000  # each open connection holds its buffers

        steady = economy._memory_alone(client)

        assert int(client.info("clients")["connected_clients"]) == 1
        families = economy.memory_by_family(client, "t")
        assert set(families) == {"b", "idx"} and families["b"] > 20 * 200
        data = sum(families.values()) + economy._keyspace_overhead(client)
        # What is left is the keys' data (MEMORY USAGE estimates it to within allocator rounding), not connections.
        assert 0.8 * data < steady - base < 1.2 * data + 2_000
        assert others[0].ping()  # a closed client reconnects on its next command
    finally:
        server.stop()
