#!/usr/bin/python3
"""The raw reference: a minimal Mongrel2 handler in Python (python3-zmq).

    python-handler.py SEND_SPEC RECV_SPEC

Connects a PULL to Mongrel2's send_spec and a PUB to its recv_spec, answers
every request with "hello world" (or echoes a POST body as JSON), keeps the
connection open unless the request says otherwise, and ignores notices.
"""
import json
import sys

import zmq

HELLO = b"hello world\n"


def netstring(buf, pos):
    colon = buf.index(b":", pos)
    start = colon + 1
    end = start + int(buf[pos:colon])
    return buf[start:end], end + 1


def main(send_spec, recv_spec):
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(send_spec)
    pub = ctx.socket(zmq.PUB)
    pub.connect(recv_spec)
    while True:
        msg = pull.recv()
        sender, conn_id, path, rest = msg.split(b" ", 3)
        raw_headers, pos = netstring(rest, 0)
        body, _ = netstring(rest, pos)
        if path == b"@*":
            continue
        headers = json.loads(raw_headers)
        ctype, out = (b"application/json", body) if body else (b"text/plain", HELLO)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        target = b"%s %d:%s, " % (sender, len(conn_id), conn_id)
        pub.send(target + head % (ctype, len(out)) + out)
        conn = headers.get("connection", "").lower()
        if conn == "close" or (headers.get("VERSION") == "HTTP/1.0" and conn != "keep-alive"):
            pub.send(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
