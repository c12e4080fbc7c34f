#!/usr/bin/env python3
"""Capture listener for the capture lab (stdlib only).

Accepts rsyslog's omfwd TCP stream with octet-counted framing (RFC 6587 3.4.1), and appends
every message to OUT as one line: the frame's bytes exactly as rsyslog sent them, minus the
"LEN " prefix and minus the single trailing LF that rsyslog's RFC5424 template puts inside
the frame. Nothing else is rewritten. A line is flushed as soon as its frame is complete, so
the driver can poll OUT to see that a marker arrived.

usage: listener.py --bind ADDR --port PORT --out FILE [--ready FILE]
"""
import argparse
import socket
import sys
import threading

lock = threading.Lock()


def serve(conn, out):
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            buf += data
            while True:
                sp = buf.find(b" ")
                if sp < 0:
                    break
                head = buf[:sp]
                if not head.isdigit():
                    # not octet-counted (should not happen): fall back to LF framing
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    frame, buf = buf[:nl], buf[nl + 1:]
                else:
                    n = int(head)
                    if len(buf) < sp + 1 + n:
                        break
                    frame, buf = buf[sp + 1:sp + 1 + n], buf[sp + 1 + n:]
                if frame.endswith(b"\n"):
                    frame = frame[:-1]
                with lock:
                    out.write(frame + b"\n")
                    out.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()
    fam = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(16)
    out = open(a.out, "ab")
    if a.ready:
        open(a.ready, "w").close()
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, out), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
