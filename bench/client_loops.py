"""Why the strategy client waits in a blocking zmq.Poller loop, not Trio: one-way PUB -> SUB latency
at 1k msg/s for three receivers, interleaved in one run (3 rounds x 3000 messages each).

    python bench/client_loops.py

blocking: raw pyzmq recv(); poller: what seqtrade.client did before issue 13's loop pass (two
sockets, zmq.Poller, drain NOBLOCK; now bench/client_wake.py measures the client's own loop);
trio: seqtrade.bus.TrioSocket waiting on the edge-triggered FD, as the server does.
"""
import os, sys, time, tempfile, multiprocessing as mp, statistics
import zmq, msgpack

def pub(ep, n, rate, ready):
    ctx = zmq.Context(); s = ctx.socket(zmq.PUB); s.bind(ep); ready.wait(); time.sleep(0.5)
    gap = 1.0 / rate; nxt = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < nxt: pass
        s.send(b"ticker/X/" + msgpack.packb({"i": i, "t": time.time_ns()}))
        nxt += gap
    s.send(b"ticker/X/" + msgpack.packb({"i": -1, "t": 0}))

def sub(kind, ep, out, ready):
    ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.SUBSCRIBE, b"ticker/"); s.connect(ep)
    other = ctx.socket(zmq.SUB); other.connect(ep + "x")  # a second, idle socket, like the client's report socket
    lat = []
    def handle(f):
        d = msgpack.unpackb(f[9:]); 
        if d["i"] < 0: return False
        lat.append((time.time_ns() - d["t"]) / 1000); return True
    ready.set()
    if kind == "blocking":
        while handle(s.recv()): pass
    elif kind == "poller":
        p = zmq.Poller(); p.register(s, zmq.POLLIN); p.register(other, zmq.POLLIN)
        go = True
        while go:
            ready_ = dict(p.poll(250))
            if s in ready_:
                while True:
                    try: f = s.recv(zmq.NOBLOCK)
                    except zmq.Again: break
                    if not handle(f): go = False; break
    elif kind == "trio":
        import trio
        from seqtrade.bus import TrioSocket
        async def main():
            ts = TrioSocket(s)
            while True:
                for f in await ts.recv_batch():
                    if not handle(f): return
        trio.run(main)
    out.put(sorted(lat))

if __name__ == "__main__":
    d = tempfile.mkdtemp(dir="/tmp"); res = {k: [] for k in ("blocking", "poller", "trio")}
    for rnd in range(3):
        for kind in res:
            ep = f"ipc://{d}/{kind}{rnd}"
            q = mp.Queue(); ready = mp.Event()
            c = mp.Process(target=sub, args=(kind, ep, q, ready)); c.start()
            pr = mp.Process(target=pub, args=(ep, 3000, 1000, ready)); pr.start()
            lat = q.get(); c.join(); pr.join()
            res[kind].append(lat)
    for kind, runs in res.items():
        allv = sorted(x for r in runs for x in r)
        print(f"{kind:9} n={len(allv)} p50 {allv[len(allv)//2]:.1f} us  p90 {allv[int(len(allv)*.9)]:.1f}  p99 {allv[int(len(allv)*.99)]:.1f}")
