"""`/metrics` in the Prometheus text format, on every agent.

Managers add their Raft member (term, indexes, leader changes, write latency) and, on the
leader, the dispatcher's view (heartbeats, sessions, nodes by state); every agent reports its
own dispatcher session. Gauges are read at scrape time, so nothing is kept twice.
"""

from __future__ import annotations

import asyncio

from ..manager.admission import REFUSAL_REASONS

PREFIX = "swarmkit"
API_REFUSAL_REASONS = ("not_manager", "revoked_certificate", "demoted")


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def metric(self, name: str, kind: str, help_: str, value, labels: dict | None = None) -> None:
        full = f"{PREFIX}_{name}"
        if full not in self._seen:
            self._seen.add(full)
            self.lines.append(f"# HELP {full} {help_}")
            self.lines.append(f"# TYPE {full} {kind}")
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        self.lines.append(f"{full}{lab} {float(value):g}" if not isinstance(value, bool) else f"{full}{lab} {int(value)}")

    def histogram(self, name: str, help_: str, h) -> None:
        """`h` has `cumulative()` [(bound, count <= bound)], `count` and `sum`."""
        full = f"{PREFIX}_{name}"
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} histogram")
        for bound, cnt in h.cumulative():
            self.lines.append(f'{full}_bucket{{le="{bound:g}"}} {cnt}')
        self.lines.append(f'{full}_bucket{{le="+Inf"}} {h.count}')
        self.lines.append(f"{full}_sum {h.sum:.6f}")
        self.lines.append(f"{full}_count {h.count}")


def render(agent) -> str:
    o = _Out()
    st = agent.state
    o.metric("agent_info", "gauge", "This agent's node and role.", 1,
             {"node_id": st.node_id if st else "", "role": st.role if st else "none"})
    sess = agent.session
    if sess is not None:
        o.metric("worker_session_connected", "gauge", "1 while a dispatcher session is open.", sess.connected.is_set())
        o.metric("worker_heartbeats_total", "counter", "Heartbeats sent to the dispatcher.", sess.stats["heartbeats"])
        o.metric("worker_sessions_opened_total", "counter", "Dispatcher sessions opened.", sess.stats["sessions_opened"])
        o.metric("worker_known_managers", "gauge", "Managers this node can fail over to.", len(sess.managers))
    # What the trust boundary refused, by port and reason: every known reason is always
    # exported (a series that appears only after the first attack cannot be alerted on).
    refusals_help = ("Connections, frames and calls refused by the trust boundary "
                     "(port 2377: caps, limits, handshakes, revoked certificates, role checks; api: the Docker API's role checks).")
    cluster = getattr(agent, "cluster_refused", {})
    for reason in sorted(set(REFUSAL_REASONS) | set(cluster)):
        o.metric("trust_refusals_total", "counter", refusals_help, cluster.get(reason, 0),
                 {"port": "cluster", "reason": reason})
    api = getattr(agent, "api_refused", {})
    for reason in sorted(set(API_REFUSAL_REASONS) | set(api)):
        o.metric("trust_refusals_total", "counter", refusals_help, api.get(reason, 0),
                 {"port": "api", "reason": reason})
    lw = agent.loopwatch
    o.histogram("event_loop_stall_seconds", "Event loop turns held 50 ms or longer, by how long.", lw.stalls)
    o.metric("event_loop_stall_max_seconds", "gauge", "Longest event loop hold since the agent started.", lw.max_s)
    o.metric("gc_full_collections_total", "counter", "Full (generation 2) garbage collections.", lw.gc_full)
    o.metric("gc_full_collection_seconds_total", "counter", "Time spent in full garbage collections.", lw.gc_full_s)
    if agent.gc_policy is not None:
        o.metric("gc_frozen_objects", "gauge", "Objects a full collection skips (survivors of the last one).",
                 agent.gc_policy.frozen)
    api_latency = getattr(agent, "api_latency", None)
    if api_latency is not None:
        o.histogram("api_request_seconds", "Docker API requests, by how long their handler took.", api_latency)
    api_reads = getattr(agent, "api_read_wait", None)
    if api_reads is not None:
        o.histogram("api_read_barrier_seconds", "Time the API's reads waited for their barrier (a quorum's "
                    "confirmation and the apply up to it) on the API's front thread.", api_reads)
    lane = getattr(agent, "api_read_lane", None)
    if lane is not None:
        for (role, outcome), n in lane().items():
            o.metric("api_read_lane_total", "counter", "The API's linearizable reads by this manager's Raft "
                     "role and how the read lane did (confirmed: by a majority's terms, without this "
                     "manager's loop; declined: passed to the Raft core's round).", n,
                     {"role": role, "outcome": outcome})
    mgr = agent.manager
    if mgr is not None and mgr.raft.core is not None:
        r = mgr.raft
        c = r.core
        o.metric("raft_term", "gauge", "Current Raft term.", c.term)
        o.metric("raft_commit_index", "gauge", "Highest log index known committed.", c.commit)
        o.metric("raft_apply_index", "gauge", "Highest log index applied to the store.", c.applied)
        o.metric("raft_is_leader", "gauge", "1 on the leader.", r.is_leader)
        o.metric("raft_leader_changes_total", "counter", "Leader or role changes seen by this member.", r.metrics["leader_changes"])
        o.metric("raft_proposals_total", "counter", "Writes proposed on this member.", r.metrics["proposals"])
        o.metric("raft_entries_decoded_in_steps_total", "counter", "Big committed entries of "
                 "others decoded a slice at a time, this member answering its peers between "
                 "slices.", r.metrics["decoded_in_steps"])
        o.metric("raft_fsyncs_total", "counter", "WAL fsyncs (one per batch).", r.metrics["fsyncs"])
        o.metric("raft_election_stretch", "gauge",
                 "Factor on this follower's election timeout from its leader's recent silences.", r.election_stretch)
        o.metric("raft_stalled_ticks_total", "counter",
                 "Ticks not counted because this member's event loop was held.", r.metrics["stalled_ticks"])
        o.metric("raft_writes_failed_on_step_down_total", "counter",
                 "Writes failed at once because this leader lost its majority (check-quorum) before "
                 "they committed.", r.metrics["writes_failed_on_step_down"])
        o.metric("raft_members", "gauge", "Raft members by kind.", len(c.conf.voters), {"kind": "voter"})
        o.metric("raft_members", "gauge", "Raft members by kind.", len(c.conf.learners), {"kind": "learner"})
        o.histogram("raft_proposal_seconds", "Time from proposing a write to its application.", r.proposal_latency)
        o.histogram("raft_read_index_seconds", "Time a linearizable read waited for its confirmation and apply.",
                    r.read_latency)
        o.histogram("raft_apply_seconds", "Event loop time applying one batch of committed entries.", r.apply_time)
        for source, n in mgr.store.applied_from.items():
            o.metric("store_entries_applied_total", "counter", "Raft entries applied to the store, by "
                     "what they were read from: their bytes, or the objects of the writer that "
                     "proposed them on this manager.", n, {"from": source})
        m = mgr.dispatcher.metrics()
        o.metric("dispatcher_heartbeats_total", "counter", "Heartbeats received (leader).", m.get("heartbeats", 0))
        o.metric("dispatcher_sessions", "gauge", "Open worker sessions (leader).", m.get("sessions", 0))
        o.metric("dispatcher_heartbeat_period_seconds", "gauge",
                 "Heartbeat period workers are asked for (grows with the cluster).",
                 m.get("heartbeat_period", 0))
        o.metric("dispatcher_nodes_declared_down_total", "counter", "Nodes declared down for missed heartbeats.",
                 m.get("nodes_declared_down", 0))
        for kind in ("full", "incremental"):
            o.metric("dispatcher_assignment_pushes_total", "counter",
                     "Assignment pushes sent (leader): a node's full set, or what changed in it.",
                     m.get(f"assignment_{kind}_pushes", 0), {"kind": kind})
        for state, n in m.get("nodes", {}).items():
            o.metric("nodes", "gauge", "Nodes by state, as stored.", n, {"state": state})
    return "\n".join(o.lines) + "\n"


READ_TIMEOUT = 10.0
"""Seconds a scraper has to send its request (head only: /metrics takes no body)."""
MAX_HEAD = 8192
"""Bytes of request line plus headers accepted; a longer head is answered 431."""


async def serve_metrics(agent, host: str, port: int) -> asyncio.Server:
    """Serve GET /metrics over plain HTTP/1.1 on (host, port); ``server.close()`` stops it.

    A few lines of asyncio instead of aiohttp: a Prometheus scrape is one GET answered with
    one text body and the connection closed, and every agent serves it, workers included,
    whose memory budget (issue 13, bench/agent_rss.py) aiohttp's ~9 MB would spend on its own.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await _answer(agent, reader)
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\n"
                "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\nX-Content-Type-Options: nosniff\r\n"
                "Connection: close\r\n\r\n".encode("latin-1") + data)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_HEAD)


async def _answer(agent, reader: asyncio.StreamReader) -> tuple[int, str]:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    except TimeoutError:
        return 408, "request head not received in time\n"
    except asyncio.LimitOverrunError:
        return 431, f"request head larger than {MAX_HEAD} bytes\n"
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return 400, "malformed request line\n"
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target != b"/metrics":
        return 404, "only /metrics is served here\n"
    if method != b"GET":
        return 405, "/metrics answers GET\n"
    return 200, render(agent)
