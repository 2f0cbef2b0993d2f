# Probe of the /metrics endpoint: run inside the relay's namespace. Prints seconds per scrape.
import socket, sys, time, threading
A = ("127.0.0.1", 19108)
GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
def scrape(req=GET, timeout=15):
    t = time.time(); s = socket.create_connection(A, timeout=timeout)
    try:
        s.sendall(req); out = b""
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
        return time.time() - t, out[:12].decode(errors="replace"), len(out)
    except Exception as e:
        return time.time() - t, repr(e), 0
    finally:
        s.close()
mode = sys.argv[1]
if mode == "idle":
    n = int(sys.argv[2]); idle = [socket.create_connection(A) for _ in range(n)]
    for _ in range(3): print("idle", n, "%.2f s %s %d" % scrape())
elif mode == "slowloris":
    stop = [False]
    def loris():
        s = socket.create_connection(A)
        for i in range(120):
            if stop[0]: break
            try: s.send(GET[i % len(GET):i % len(GET) + 1])
            except Exception: break
            time.sleep(0.1)
    ts = [threading.Thread(target=loris) for _ in range(16)]
    [t.start() for t in ts]; time.sleep(0.2)
    for _ in range(3): print("slowloris 16: %.2f s %s %d" % scrape())
    stop[0] = True; [t.join() for t in ts]
elif mode == "slowreader":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(A); s.sendall(GET)
    def rd():
        for _ in range(60):
            if not s.recv(1024): break
            time.sleep(0.03)
    t = threading.Thread(target=rd); t.start(); time.sleep(0.2)
    for _ in range(3): print("slow reader: %.2f s %s %d" % scrape())
    t.join()
elif mode == "bigline":
    print("1 MB request line: %.2f s %s" % scrape(b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")[:2])
