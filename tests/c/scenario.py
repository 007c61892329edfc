"""The todo/owner/permission scenario through the shared library with ctypes: every function
the header declares resolves; a schema with owner rules; users writing their own todos and
denied others'; a subscription callback following writes; the embedded server answering an
HTTP fetch; a sync client (a phone's local database) subscribing and writing through it. Run by
tests/ffi.rs: scenario.py <libtriplite.so> <triplite.h>."""

import base64
import ctypes
import hashlib
import hmac
import json
import re
import sys
import threading
import urllib.request

lib = ctypes.CDLL(sys.argv[1])
header = open(sys.argv[2]).read()

# Every declared function resolves in the loaded library.
declared = re.findall(r"^[a-z0-9_ ]*?[ *](triplite_[a-z_]+)\(", header, re.M)
assert len(declared) >= 26, declared
for name in declared:
    getattr(lib, name)

OK, MISUSE, INVALID_JSON, SCHEMA, NOT_FOUND, PERMISSION, AUTH = range(7)
c_str = ctypes.c_char_p
handle = ctypes.c_void_p
out_str = ctypes.POINTER(ctypes.c_void_p)

lib.triplite_version.restype = c_str
lib.triplite_string_free.argtypes = [ctypes.c_void_p]
lib.triplite_server_port.restype = ctypes.c_uint16
lib.triplite_server_port.argtypes = [handle]
for name in ["triplite_db_close", "triplite_session_free", "triplite_subscription_free", "triplite_server_stop"]:
    getattr(lib, name).argtypes = [handle]
RESULT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
lib.triplite_session_subscribe.argtypes = [handle, c_str, RESULT, ctypes.c_void_p, DESTROY, ctypes.POINTER(handle), out_str]


class TripliteError(Exception):
    def __init__(self, status, message):
        super().__init__(f"status {status}: {message}")
        self.status = status


def take(ptr):
    """A string the library returned, freed."""
    if not ptr.value:
        return None
    text = ctypes.string_at(ptr.value).decode()
    lib.triplite_string_free(ptr)
    return text


def call(name, *args, out=True):
    """Calls `name` with the trailing out_json/out_err pointers; raises on failure."""
    result = ctypes.c_void_p()
    err = ctypes.c_void_p()
    tail = [ctypes.byref(result)] if out else []
    status = getattr(lib, name)(*args, *tail, ctypes.byref(err))
    if status != OK:
        raise TripliteError(status, take(err))
    return json.loads(take(result)) if out and result.value else None


def new_handle(name, *args):
    out = handle()
    err = ctypes.c_void_p()
    status = getattr(lib, name)(*args, ctypes.byref(out), ctypes.byref(err))
    if status != OK:
        raise TripliteError(status, take(err))
    return out


def enc(value):
    return json.dumps(value).encode() if not isinstance(value, str) else value.encode()


def expect_error(status, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except TripliteError as e:
        assert e.status == status, e
        return str(e)
    raise AssertionError(f"expected status {status}")


own = {"filter": [["owner", "=", "$role.userId"]]}
schema = {
    "roles": {"user": {"match": {"sub": "$userId"}}},
    "collections": {"todos": {
        "schema": {"type": "record", "properties": {
            "id": {"type": "string"}, "text": {"type": "string"}, "owner": {"type": "string"},
            "done": {"type": "boolean", "config": {"default": False}}}},
        "permissions": {"user": {"read": own, "insert": own, "update": own, "delete": own}}}},
}
secret = "python-scenario-secret"
assert lib.triplite_version().decode()

db = new_handle("triplite_db_open", None, enc({"schema": schema, "jwt_secret": secret}))
alice = new_handle("triplite_db_session_from_claims", db, enc({"sub": "alice"}))
bob = new_handle("triplite_db_session_from_claims", db, enc({"sub": "bob"}))

# A subscription for alice, fed by writes from this and another thread.
seen = []
changed = threading.Condition()
destroyed = []


@RESULT
def on_result(_user_data, result_json):
    with changed:
        seen.append(json.loads(result_json.decode()))
        changed.notify_all()


@DESTROY
def on_destroy(_user_data):
    destroyed.append(True)


sub = handle()
err = ctypes.c_void_p()
status = lib.triplite_session_subscribe(alice, enc({"collectionName": "todos"}), on_result, None, on_destroy,
                                        ctypes.byref(sub), ctypes.byref(err))
assert status == OK, take(err)


def wait_until(predicate):
    with changed:
        assert changed.wait_for(predicate, timeout=10), seen[-1:] if seen else "no result"


wait_until(lambda: seen and seen[-1]["results"] == [])

inserted = call("triplite_session_insert", alice, b"todos", enc({"id": "a1", "text": "milk", "owner": "alice"}))
assert inserted["done"] is False
wait_until(lambda: [t["id"] for t in seen[-1]["results"]] == ["a1"])
assert seen[-1]["added"][0]["text"] == "milk"

message = expect_error(PERMISSION, call, "triplite_session_insert", alice, b"todos",
                       enc({"id": "a2", "text": "as bob", "owner": "bob"}))
assert "WritePermissionError" in message
call("triplite_session_insert", bob, b"todos", enc({"id": "b1", "text": "bread", "owner": "bob"}))
assert [t["id"] for t in call("triplite_session_fetch", bob, enc({"collectionName": "todos"}))] == ["b1"]
assert call("triplite_session_fetch_by_id", alice, b"todos", b"b1") is None
# A denied write to a row alice cannot read is answered as one to a missing row.
message = expect_error(NOT_FOUND, call, "triplite_session_update", alice, b"todos", b"b1", enc({"text": "x"}), out=False)
assert "EntityNotFoundError" in message


def other_thread():
    call("triplite_session_update", alice, b"todos", b"a1", enc({"done": True}), out=False)


t = threading.Thread(target=other_thread)
t.start()
t.join()
wait_until(lambda: seen[-1]["results"] and seen[-1]["results"][0]["done"] is True)
assert [t["id"] for t in seen[-1]["updated"]] == ["a1"]

expect_error(INVALID_JSON, call, "triplite_db_fetch", db, b"{nope")
expect_error(MISUSE, call, "triplite_db_fetch", None, enc({"collectionName": "todos"}))
expect_error(AUTH, new_handle, "triplite_db_session", db, b"not.a.token")

# The embedded server, fetched over HTTP with a service token.
server = new_handle("triplite_server_start", db, enc({"host": "127.0.0.1", "port": 0}))
port = lib.triplite_server_port(server)
assert port > 0
token = ctypes.c_void_p()
err = ctypes.c_void_p()
assert lib.triplite_token_mint_dev(enc(secret), b"secret", ctypes.byref(token), ctypes.byref(err)) == OK
service = take(token)
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/fetch", data=enc({"query": {"collectionName": "todos", "order": [["id", "ASC"]]}}),
    headers={"Authorization": f"Bearer {service}", "Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(request, timeout=10) as response:
    rows = json.loads(response.read())
assert [r["id"] for r in rows] == ["a1", "b1"], rows


def hs256(claims):
    """A user token, signed as an identity provider would (here with the server's secret)."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")
    signed = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signed + b"." + b64(hmac.new(secret.encode(), signed, hashlib.sha256).digest())).decode()


# The sync client: a phone's local database syncing with the embedded server.
lib.triplite_client_close.argtypes = [handle]
lib.triplite_client_subscribe.argtypes = [handle, c_str, c_str, RESULT, ctypes.c_void_p, DESTROY,
                                          ctypes.POINTER(handle), out_str]
lib.triplite_client_on_event.argtypes = [handle, RESULT, ctypes.c_void_p, DESTROY, out_str]
phone = new_handle("triplite_client_open", enc({
    "serverUrl": f"http://127.0.0.1:{port}", "token": hs256({"sub": "alice", "exp": 4000000000}), "schema": schema}))
events, phone_seen = [], []


@RESULT
def on_event(_user_data, event_json):
    with changed:
        events.append(json.loads(event_json.decode()))
        changed.notify_all()


@RESULT
def on_phone_result(_user_data, result_json):
    with changed:
        phone_seen.append(json.loads(result_json.decode()))
        changed.notify_all()


@DESTROY
def on_phone_destroy(_user_data):
    destroyed.append("phone")


err = ctypes.c_void_p()
assert lib.triplite_client_on_event(phone, on_event, None, on_phone_destroy, ctypes.byref(err)) == OK, take(err)
phone_sub = handle()
assert lib.triplite_client_subscribe(phone, enc({"collectionName": "todos"}), None, on_phone_result, None,
                                     on_phone_destroy, ctypes.byref(phone_sub), ctypes.byref(err)) == OK, take(err)
wait_until(lambda: phone_seen and phone_seen[-1]["fulfilled"] and [t["id"] for t in phone_seen[-1]["results"]] == ["a1"])
committed = call("triplite_client_insert", phone, b"todos", enc({"id": "p1", "text": "from the phone", "owner": "alice"}))
assert committed["entity"]["id"] == "p1" and committed["txId"], committed
wait_until(lambda: {"type": "write_acked", "txId": committed["txId"]} in events)
assert call("triplite_db_fetch_by_id", db, b"todos", b"p1")["text"] == "from the phone"
message = expect_error(PERMISSION, call, "triplite_client_insert", phone, b"todos",
                       enc({"id": "p2", "text": "as bob", "owner": "bob"}))
assert "WritePermissionError" in message
status = call("triplite_client_status", phone)
assert status["connection"] == "OPEN" and status["pendingTransactions"] == 0, status
assert {"type": "connection", "status": "OPEN"} in events, events
lib.triplite_subscription_free(phone_sub)
lib.triplite_client_close(phone)
assert destroyed.count("phone") == 2, destroyed

lib.triplite_server_stop(server)

lib.triplite_subscription_free(sub)
assert destroyed.count(True) == 1
lib.triplite_session_free(alice)
lib.triplite_session_free(bob)
lib.triplite_db_close(db)
print("scenario passed")
