"""The bench app for nginx + uWSGI, the same routes as plain.mjs:
GET / "hello world\n", POST /echo (JSON body back), GET /1mb, GET /cpu (5 ms).
"""
import time

HELLO = b"hello world\n"
MEGABYTE = b"x" * (1024 * 1024)


def reply(start_response, ctype, body):
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if environ["REQUEST_METHOD"] == "POST" and path == "/echo":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        return reply(start_response, "application/json", environ["wsgi.input"].read(size))
    if path == "/1mb":
        return reply(start_response, "application/octet-stream", MEGABYTE)
    if path == "/cpu":
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
        return reply(start_response, "text/plain", b"done\n")
    return reply(start_response, "text/plain", HELLO)
