"""Cluster mode: several camserver nodes share cameras, viewers and configuration through
Redis. Imported only when ``CAMSERVER_REDIS_URL`` is set; see docs/cluster.md.

- ``wire``: key names and message formats (no I/O)
- ``backend``: the Redis client, Lua scripts, self-healing subscriptions
- ``lease``: which node pulls a camera (lease + fencing token)
- ``relay``: frames across nodes (``ClusterHub``, ``FrameRelay``)
- ``store``: configuration in Redis (``RedisStore``, ``ConfigFeed``)
- ``node``: this node's loop (leases taken and given up, demand, status, heartbeat)
- ``placement``: the stream registry's placement in cluster mode (``ClusterPlacement``)
- ``setup``: wiring into the runtime
"""
