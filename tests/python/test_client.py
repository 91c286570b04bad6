#!/usr/bin/env python3
"""Bedrock's gRPC contract exercised from Python (grpcio).

The .proto files are the public, language-neutral API of a Bedrock server.
This script proves a client in another language can use them as published:
it generates Python stubs from proto/bedrock/v1/kv.proto with
`python -m grpc_tools.protoc` into a temporary directory, imports them, and
runs Put, Get (present and missing), Delete, a streamed Scan, compare-and-swap
transactions and invalid requests against a live server.

Usage (stdlib unittest; needs tests/python/requirements.txt installed):

    BEDROCK_ENDPOINT=127.0.0.1:8080 python3 tests/python/test_client.py

Every run writes under a fresh key prefix, so it can run again against the
same server. The Rust test crates/bedrock-server/tests/server/python_client.rs
starts a server and runs this script.
"""

import os
import subprocess
import sys
import tempfile
import unittest
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTO = PROTO_ROOT / "bedrock" / "v1" / "kv.proto"

# How long one call may take (a debug build on a busy machine is slow).
CALL_TIMEOUT_S = 30
# The server's gRPC message limit; grpcio's default receive limit is 4 MiB.
MAX_MESSAGE_BYTES = 64 << 20
# Scan chunks hold about 1 MiB; values this large force several chunks.
BIG_VALUE_BYTES = 600 << 10

grpc = None
pb = None
pb_grpc = None
_stub_dir = None


def generate_stubs(out_dir):
    """Runs protoc from grpc_tools on kv.proto; returns the two modules."""
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"protoc failed ({done.returncode}): {done.stderr}")
    sys.path.insert(0, str(out_dir))
    from bedrock.v1 import kv_pb2, kv_pb2_grpc  # noqa: E402 (generated above)

    return kv_pb2, kv_pb2_grpc


def setUpModule():
    global grpc, pb, pb_grpc, _stub_dir
    import grpc as grpc_module

    grpc = grpc_module
    _stub_dir = tempfile.TemporaryDirectory(prefix="bedrock-stubs-")
    pb, pb_grpc = generate_stubs(_stub_dir.name)


def tearDownModule():
    if _stub_dir is not None:
        _stub_dir.cleanup()


class KvTest(unittest.TestCase):
    """The KV service through grpcio stubs generated from kv.proto."""

    @classmethod
    def setUpClass(cls):
        endpoint = os.environ["BEDROCK_ENDPOINT"]
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        cls.channel = grpc.insecure_channel(endpoint, options=options)
        grpc.channel_ready_future(cls.channel).result(timeout=CALL_TIMEOUT_S)
        cls.kv = pb_grpc.KVStub(cls.channel)
        cls.prefix = f"py/{uuid.uuid4().hex}/".encode()

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def key(self, name):
        """`name` under this run's prefix, as bytes."""
        return self.prefix + (name.encode() if isinstance(name, str) else name)

    def put(self, name, value):
        req = pb.PutRequest(key=self.key(name), value=value)
        return self.kv.Put(req, timeout=CALL_TIMEOUT_S).revision

    def get(self, name):
        return self.kv.Get(pb.GetRequest(key=self.key(name)), timeout=CALL_TIMEOUT_S)

    def scan(self, start, end, limit=0):
        """Returns the list of chunks of one streamed scan."""
        req = pb.ScanRequest(start=self.key(start), end=self.key(end), limit=limit)
        return list(self.kv.Scan(req, timeout=CALL_TIMEOUT_S))

    def assert_code(self, code, call, *args):
        with self.assertRaises(grpc.RpcError) as caught:
            call(*args, timeout=CALL_TIMEOUT_S)
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        return caught.exception

    def test_put_then_get_returns_the_value_and_revision(self):
        r1 = self.put("name", b"raft")
        r2 = self.put("name", b"paxos")
        self.assertGreater(r1, 0)
        self.assertGreater(r2, r1, "revisions increase")
        resp = self.get("name")
        self.assertTrue(resp.HasField("kv"))
        self.assertEqual(resp.kv.key, self.key("name"))
        self.assertEqual(resp.kv.value, b"paxos")
        self.assertGreaterEqual(resp.revision, r2, "the read covers the write")

    def test_binary_and_empty_values_round_trip(self):
        binary = bytes([0, 255, 10, 13, 0])
        self.put(b"\x00\xff", binary)
        self.assertEqual(self.get(b"\x00\xff").kv.value, binary)
        self.put("empty", b"")
        resp = self.get("empty")
        self.assertTrue(resp.HasField("kv"), "an empty value is a value")
        self.assertEqual(resp.kv.value, b"")

    def test_get_of_a_missing_key_has_no_kv(self):
        resp = self.get("never-written")
        self.assertFalse(resp.HasField("kv"))

    def test_delete_removes_the_key(self):
        r1 = self.put("doomed", b"x")
        r2 = self.kv.Delete(pb.DeleteRequest(key=self.key("doomed")), timeout=CALL_TIMEOUT_S).revision
        self.assertGreater(r2, r1)
        self.assertFalse(self.get("doomed").HasField("kv"))
        # Deleting a missing key succeeds too.
        self.kv.Delete(pb.DeleteRequest(key=self.key("doomed")), timeout=CALL_TIMEOUT_S)

    def test_scan_streams_the_range_in_key_order(self):
        # Written out of order; two values large enough to need several chunks.
        entries = {
            "scan/c": b"3" * BIG_VALUE_BYTES,
            "scan/a": b"1",
            "scan/e": b"5" * BIG_VALUE_BYTES,
            "scan/b": b"2",
            "scan/d": b"4",
        }
        last = max(self.put(k, v) for k, v in entries.items())
        self.put("scan0", b"past the end")

        chunks = self.scan("scan/", "scan0")
        self.assertGreaterEqual(len(chunks), 2, "about 1 MiB per chunk")
        got = [(kv.key, kv.value) for chunk in chunks for kv in chunk.kvs]
        want = [(self.key(k), entries[k]) for k in sorted(entries)]
        self.assertEqual([k for k, _ in got], [k for k, _ in want])
        self.assertEqual(got, want)
        revisions = {chunk.revision for chunk in chunks}
        self.assertEqual(len(revisions), 1, "one snapshot for the whole scan")
        self.assertGreaterEqual(revisions.pop(), last)

        # `limit` bounds the total; `end` is exclusive.
        limited = self.scan("scan/", "scan0", limit=2)
        self.assertEqual([kv.key for c in limited for kv in c.kvs], [self.key("scan/a"), self.key("scan/b")])
        upto_c = self.scan("scan/", "scan/c")
        self.assertEqual([kv.key for c in upto_c for kv in c.kvs], [self.key("scan/a"), self.key("scan/b")])

        # An empty range is one chunk without key-values, with the revision.
        empty = self.scan("nothing/", "nothing0")
        self.assertEqual(len(empty), 1)
        self.assertEqual(len(empty[0].kvs), 0)
        self.assertGreaterEqual(empty[0].revision, last)

    def compare_and_swap(self, name, expected, new):
        """Txn: if value == expected, put new and read it; else read."""
        cmp = pb.Compare(
            key=self.key(name),
            result=pb.Compare.EQUAL,
            target=pb.Compare.VALUE,
            value=expected,
        )
        put = pb.RequestOp(put=pb.PutRequest(key=self.key(name), value=new))
        get = pb.RequestOp(get=pb.GetRequest(key=self.key(name)))
        req = pb.TxnRequest(compare=[cmp], success=[put, get], failure=[get])
        return self.kv.Txn(req, timeout=CALL_TIMEOUT_S)

    def test_txn_compare_and_swap(self):
        r0 = self.put("cas", b"v1")

        won = self.compare_and_swap("cas", b"v1", b"v2")
        self.assertTrue(won.succeeded)
        self.assertEqual(len(won.responses), 2)
        self.assertEqual(won.responses[0].WhichOneof("response"), "put")
        self.assertGreater(won.revision, r0)
        self.assertEqual(won.responses[0].put.revision, won.revision)
        self.assertEqual(won.responses[1].get.kv.value, b"v2", "reads see the branch's writes")

        lost = self.compare_and_swap("cas", b"v1", b"v3")
        self.assertFalse(lost.succeeded)
        self.assertEqual(len(lost.responses), 1)
        self.assertEqual(lost.responses[0].WhichOneof("response"), "get")
        self.assertEqual(lost.responses[0].get.kv.value, b"v2")
        self.assertGreaterEqual(lost.revision, won.revision)
        self.assertEqual(self.get("cas").kv.value, b"v2", "the failed swap wrote nothing")

    def test_txn_create_if_absent(self):
        absent = pb.Compare(key=self.key("once"), target=pb.Compare.EXISTS, exists=False)
        put = pb.RequestOp(put=pb.PutRequest(key=self.key("once"), value=b"first"))
        req = pb.TxnRequest(compare=[absent], success=[put])
        self.assertTrue(self.kv.Txn(req, timeout=CALL_TIMEOUT_S).succeeded)
        again = self.kv.Txn(req, timeout=CALL_TIMEOUT_S)
        self.assertFalse(again.succeeded)
        self.assertEqual(len(again.responses), 0)
        self.assertEqual(self.get("once").kv.value, b"first")

    def test_invalid_requests_are_invalid_argument(self):
        code = grpc.StatusCode.INVALID_ARGUMENT
        err = self.assert_code(code, self.kv.Put, pb.PutRequest(key=b"", value=b"v"))
        self.assertIn("empty", err.details())
        self.assert_code(code, self.kv.Get, pb.GetRequest(key=b""))
        self.assert_code(code, self.kv.Delete, pb.DeleteRequest(key=b""))
        self.assert_code(code, self.kv.Get, pb.GetRequest(key=b"k" * ((8 << 10) + 1)))
        ordered_exists = pb.Compare(key=self.key("x"), result=pb.Compare.GREATER, target=pb.Compare.EXISTS)
        self.assert_code(code, self.kv.Txn, pb.TxnRequest(compare=[ordered_exists]))
        self.assert_code(code, self.kv.Txn, pb.TxnRequest(success=[pb.RequestOp()]))


if __name__ == "__main__":
    if not os.environ.get("BEDROCK_ENDPOINT"):
        sys.exit("test_client.py: set BEDROCK_ENDPOINT to a server's host:port")
    unittest.main(verbosity=2)
