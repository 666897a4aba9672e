#!/usr/bin/env python3
"""Generate tests/vectors/dirnode.json with Tahoe-LAFS's own directory code.

Run with a Python that has tahoe-lafs installed (1.20.0 was used):

    python3 -m venv /tmp/tahoe-venv && /tmp/tahoe-venv/bin/pip install tahoe-lafs
    /tmp/tahoe-venv/bin/python tests/vectors/gen_dirnode_vectors.py > tests/vectors/dirnode.json

No grid is needed: a NodeMaker with no storage broker turns caps into nodes, Tahoe's
`dirnode.pack_children` packs them, `DirectoryNode._unpack_contents` reads them back, and the
`Adder`/`Deleter`/`MetadataSetter` modifiers (the functions Tahoe runs inside a mutable-file
update) perform edits with `time.time` pinned to a given value. Every key and cap is drawn from a
seeded RNG, so the output is the same on every run.
"""

import base64
import hashlib
import json
import random
import sys
import unicodedata

import allmydata
from allmydata import dirnode, uri
from allmydata.nodemaker import NodeMaker
from allmydata.util import base32

rng = random.Random(20240807)


def rb(n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def chk(size=None):
    return uri.CHKFileURI(rb(16), rb(32), 3, 10, size if size is not None else rng.randrange(56, 10**9))


def lit(n=None):
    return uri.LiteralFileURI(rb(n if n is not None else rng.randrange(0, 56)))


def ssk():
    return uri.WriteableSSKFileURI(rb(16), rb(32))


def mdmf():
    return uri.WriteableMDMFFileURI(rb(16), rb(32))


CAP_MAKERS = [
    ("chk", lambda: chk()),
    ("lit", lambda: lit()),
    ("empty-lit", lambda: lit(0)),
    ("ssk", lambda: ssk()),
    ("ssk-ro", lambda: ssk().get_readonly()),
    ("mdmf", lambda: mdmf()),
    ("mdmf-ro", lambda: mdmf().get_readonly()),
    ("dir2", lambda: uri.DirectoryURI(ssk())),
    ("dir2-ro", lambda: uri.DirectoryURI(ssk()).get_readonly()),
    ("dir2-mdmf", lambda: uri.MDMFDirectoryURI(mdmf())),
    ("dir2-mdmf-ro", lambda: uri.MDMFDirectoryURI(mdmf()).get_readonly()),
    ("dir2-chk", lambda: uri.ImmutableDirectoryURI(chk())),
    ("dir2-lit", lambda: uri.LiteralDirectoryURI(lit())),
]
IMMUTABLE_KINDS = {"chk", "lit", "empty-lit", "dir2-chk", "dir2-lit"}

FUTURE_WRITE = b"x-tahoe-crazy://I_am_from_the_future."
FUTURE_READ = b"x-tahoe-crazy-readonly://I_am_from_the_future."

nm = NodeMaker(None, None, None, None, None, {"k": 3, "n": 10}, None, None)


def node_for(write, read):
    return nm.create_from_cap(write, read)


def s(b):
    return None if b is None else b.decode("utf-8")


def describe(children):
    """children: {name: (node, metadata)} -> list in Tahoe's packing order."""
    out = []
    for name in sorted(children):
        node, md = children[name]
        out.append({
            "name": name,
            "write_uri": s(node.get_write_uri()),
            "read_uri": s(node.get_readonly_uri()),
            "metadata_json": json.dumps(md),
        })
    return out


def new_metadata(now, user=None):
    return dirnode.update_metadata(None, user, now)


def make_dir(kind):
    """A directory node of the given kind with fresh keys; returns (node, cap strings)."""
    if kind == "sdmf":
        fcap = ssk()
        dcap = uri.DirectoryURI(fcap)
    elif kind == "mdmf":
        fcap = mdmf()
        dcap = uri.MDMFDirectoryURI(fcap)
    else:
        raise ValueError(kind)
    rw_node = nm.create_from_cap(dcap.to_string())
    ro_node = nm.create_from_cap(dcap.get_readonly().to_string())
    return rw_node, ro_node, dcap


cases = []


def add_case(cid, description, children, dir_kind="sdmf", immutable=False):
    """Pack `children` ({name: (node, metadata)}) with Tahoe and record everything."""
    case = {"id": cid, "description": description}
    if immutable:
        packed = dirnode.pack_children(children, None, deep_immutable=True)
        # Any immutable directory cap will do for reading: the key is not used by the table.
        inode = nm.create_from_cap(uri.ImmutableDirectoryURI(chk()).to_string())
        unpacked = inode._unpack_contents(packed)
        case.update({"access": "immutable", "dircap": None, "writekey_hex": None})
        case["children"] = describe(children)
        case["unpacked"] = describe(unpacked)
        case["packed_hex"] = packed.hex()
        cases.append(case)
        return case
    rw_node, ro_node, dcap = make_dir(dir_kind)
    wk = rw_node._node.get_writekey()
    packed = dirnode.pack_children(children, wk, deep_immutable=False)
    case.update({
        "access": "read-write",
        "dircap": dcap.to_string().decode(),
        "readcap": dcap.get_readonly().to_string().decode(),
        "writekey_hex": wk.hex(),
    })
    case["children"] = describe(children)
    case["unpacked"] = describe(rw_node._unpack_contents(packed))
    case["unpacked_read_only"] = describe(ro_node._unpack_contents(packed))
    case["packed_hex"] = packed.hex()
    cases.append(case)
    return case


NOW = 1700000000.123456

# 1. empty
add_case("empty", "no children: the table is zero bytes", {})

# 2. one child
add_case("one-child", "a single immutable file with fresh link times",
         {"file.txt": (node_for(None, chk(1234).to_string()), new_metadata(NOW))})

# 3. every known cap kind, both slots as Tahoe fills them
kids = {}
for i, (kind, make) in enumerate(CAP_MAKERS):
    c = make().to_string()
    kids["kind-%02d-%s" % (i, kind)] = (node_for(c, None), new_metadata(NOW + i))
add_case("every-kind", "one child per known cap kind (write caps become both slots)", kids)

# 4. MDMF directory (the writekey of an MDMF cap encrypts the write caps)
kids = {}
for i, (kind, make) in enumerate(CAP_MAKERS):
    kids[kind] = (node_for(make().to_string(), None), new_metadata(NOW - i * 0.5))
add_case("mdmf-dir", "the same kinds inside a DIR2-MDMF directory", kids, dir_kind="mdmf")

# 5. 200 children
kids = {}
for i in range(200):
    kind, make = CAP_MAKERS[i % len(CAP_MAKERS)]
    md = new_metadata(NOW + i * 1.25)
    if i % 7 == 0:
        md = dirnode.update_metadata(None, {"mtime": NOW + i, "size": rng.randrange(0, 2**40)}, NOW + i)
    kids["entry-%03d" % i] = (node_for(make().to_string(), None), md)
add_case("two-hundred", "200 children of mixed kinds (the benchmark's shape)", kids)

# 6. unicode names that need NFC, sorting by code point, non-ASCII metadata
names = [
    "e\u0301clair",          # decomposed é -> NFC
    "A\u030angstr\u00f6m",   # decomposed Å
    "\u1112\u1161\u11ab",    # Hangul jamo -> 한
    "\u00e9t\u00e9",         # already NFC
    "Zebra", "apple", "\U0001F600 smile", "\u65e5\u672c\u8a9e", "tab\there", "quote\"back\\slash",
    "\u212b",                # ANGSTROM SIGN -> NFC is U+00C5
]
kids = {}
for i, n in enumerate(names):
    md = dirnode.update_metadata(None, {"note": "caf\u00e9 \u2603 \U0001F600", "i": i}, NOW + i)
    kids[n] = (node_for(None, chk().to_string()), md)
add_case("unicode-names", "names that NFC normalization changes, astral characters, escapes", kids)

# 7. read-only children in a writeable directory
kids = {}
for kind in ["ssk-ro", "mdmf-ro", "dir2-ro", "dir2-mdmf-ro", "chk", "lit"]:
    make = dict(CAP_MAKERS)[kind]
    kids["ro-" + kind] = (node_for(None, make().to_string()), new_metadata(NOW))
w = ssk()
kids["linked-read-only"] = (node_for(None, w.get_readonly().to_string()), new_metadata(NOW))
add_case("read-only-children", "read caps only: the write slot encrypts the empty string", kids)

# 8. unknown caps preserved verbatim
kids = {
    "future-rw": (node_for(FUTURE_WRITE, FUTURE_READ), new_metadata(NOW)),
    "future-ro": (node_for(None, FUTURE_READ), new_metadata(NOW)),
    "future-prefixed-ro": (node_for(b"ro." + FUTURE_READ, None), new_metadata(NOW)),
    "future-imm": (node_for(None, b"imm." + FUTURE_READ), new_metadata(NOW)),
    "ssk-verifier": (node_for(None, ssk().get_verify_cap().to_string()), new_metadata(NOW)),
    "dir-verifier": (node_for(None, uri.DirectoryURI(ssk()).get_verify_cap().to_string()), new_metadata(NOW)),
    "empty-caps": (node_for(None, None), new_metadata(NOW)),
}
add_case("unknown-caps", "caps from the future and verify caps, kept byte for byte", kids)

# 9. metadata: user keys of every JSON type, float formatting, legacy ctime/mtime
md_samples = [
    {},
    {"ctime": 1246663897.4336269, "mtime": 1246663897.4336269,
     "tahoe": {"linkmotime": 1246663897.4336269, "linkcrtime": 1246663897.4336269}},
    {"z": 1, "a": 2, "m": [1, 2.5, "three", None, True, False, {"nested": {}}]},
    {"floats": [0.0, -0.0, 0.1, 1e-05, 0.0001, 1e16, 1e15, 1.5e16, 123456789.0, 5e-324,
                1.7976931348623157e308, 2.0 ** 70, 1 / 3, 100.0]},
    {"ints": [0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, 10 ** 30, -(10 ** 30)]},
    {"strings": ["", "plain", "quote\" backslash\\ slash/", "\n\r\t\b\f\x00\x1f\x7f",
                 "caf\u00e9", "\u2028\u2029", "\U0001F600", "\ufeff"]},
    {"no-write": False, "size": 12345, "tahoe": {"linkcrtime": 1.0, "linkmotime": 2.0, "extra": "kept"}},
    {"tahoe": {"linkcrtime": 5}},
    {"unicode key \u00e9": "v", "": "empty key"},
]
kids = {}
for i, md in enumerate(md_samples):
    kids["md-%02d" % i] = (node_for(None, chk().to_string()), md)
add_case("metadata", "metadata exactly as given (no link-time update), every JSON shape", kids)

# 10. immutable directory
kids = {
    "chk": (node_for(None, chk().to_string()), new_metadata(NOW)),
    "lit": (node_for(None, lit(20).to_string()), new_metadata(NOW)),
    "dir2-chk": (node_for(None, uri.ImmutableDirectoryURI(chk()).to_string()), new_metadata(NOW)),
    "dir2-lit": (node_for(None, uri.LiteralDirectoryURI(lit(5)).to_string()), new_metadata(NOW)),
    "future-imm": (nm.create_from_cap(None, b"imm." + FUTURE_READ, deep_immutable=True), new_metadata(NOW)),
    "future-ro": (nm.create_from_cap(None, FUTURE_READ, deep_immutable=True), new_metadata(NOW)),
}
add_case("immutable", "a DIR2-CHK directory: empty write slots, only deep-immutable children",
         kids, immutable=True)

# 11. Tahoe's own legacy table (test_dirnode.Packing.known_tree: three files linked by Tahoe
# 1.4-era code, rw slot holding the CHK cap, top-level ctime/mtime), read with a read cap.
# Taken from the installed test module's source without importing it (its imports need extras).
def known_tree():
    import ast
    import os
    src = open(os.path.join(os.path.dirname(allmydata.__file__), "test", "test_dirnode.py")).read()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ClassDef) and node.name == "Packing":
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "known_tree":
                    return base64.b32decode(stmt.value.value)
    raise LookupError("known_tree not found")


legacy = known_tree()
legacy_readcap = b"URI:DIR2-RO:e3mdrzfwhoq42hy5ubcz6rp3o4:ybyibhnp3vvwuq2vaw2ckjmesgkklfs6ghxleztqidihjyofgw7q"
legacy_node = nm.create_from_cap(legacy_readcap)
cases.append({
    "id": "legacy-known-tree",
    "description": "Tahoe's own test table from 2009 (Tahoe 1.4), read-only; unpack only",
    "access": "read-only",
    "dircap": None,
    "readcap": legacy_readcap.decode(),
    "writekey_hex": None,
    "unpack_only": True,
    "unpacked_read_only": describe(legacy_node._unpack_contents(legacy)),
    "packed_hex": legacy.hex(),
})

# ---- edits: Tahoe's modifiers applied in sequence, time pinned ----


class FixedTime:
    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now


clock = FixedTime()
dirnode.time = clock


def run_edits(start_case_id, ops):
    case = next(c for c in cases if c["id"] == start_case_id)
    rw_node = nm.create_from_cap(case["dircap"].encode())
    contents = bytes.fromhex(case["packed_hex"])
    results = []
    for op in ops:
        clock.now = op["now"]
        try:
            if op["op"] == "add":
                child = nm.create_from_cap(op["write"] and op["write"].encode(),
                                           op["read"] and op["read"].encode())
                md = None if op["metadata_json"] is None else json.loads(op["metadata_json"])
                overwrite = {"yes": True, "no": False, "only-files": dirnode.ONLY_FILES}[op["overwrite"]]
                a = dirnode.Adder(rw_node, overwrite=overwrite,
                                  create_readonly_node=rw_node._create_readonly_node)
                a.set_node(op["name"], child, md)
                new = a.modify(contents, None, True)
            elif op["op"] == "remove":
                new = dirnode.Deleter(rw_node, op["name"]).modify(contents, None, True)
            elif op["op"] == "set_metadata":
                new = dirnode.MetadataSetter(rw_node, op["name"], json.loads(op["metadata_json"]),
                                             create_readonly_node=rw_node._create_readonly_node
                                             ).modify(contents, None, True)
            elif op["op"] == "rename":
                # move_child_to within one directory: set_node(new, child, old metadata), delete(old)
                children = rw_node._unpack_contents(contents)
                child, md = children[unicodedata.normalize("NFC", op["from"])]
                overwrite = {"yes": True, "no": False, "only-files": dirnode.ONLY_FILES}[op["overwrite"]]
                a = dirnode.Adder(rw_node, overwrite=overwrite,
                                  create_readonly_node=rw_node._create_readonly_node)
                a.set_node(op["to"], child, md)
                mid = a.modify(contents, None, True)
                new = dirnode.Deleter(rw_node, op["from"]).modify(mid, None, True)
            else:
                raise ValueError(op["op"])
            contents = new
            # Each result as a hash; the last one also in full (the file stays small).
            results.append(dict(op, result="ok", packed_sha256=hashlib.sha256(new).hexdigest()))
        except Exception as e:  # Tahoe refused: record which error
            results.append(dict(op, result=type(e).__name__))
    return {"start": start_case_id, "ops": results, "final_packed_hex": contents.hex()}


def cap_of(kind):
    return dict(CAP_MAKERS)[kind]().to_string().decode()


ssk_w = cap_of("ssk")
edits = [
    run_edits("two-hundred", [
        {"op": "add", "name": "new-file", "write": None, "read": cap_of("chk"),
         "metadata_json": None, "overwrite": "no", "now": 1710000000.5},
        {"op": "add", "name": "entry-005", "write": ssk_w, "read": None,
         "metadata_json": None, "overwrite": "yes", "now": 1710000001.25},
        {"op": "add", "name": "entry-007", "write": None, "read": cap_of("chk"),
         "metadata_json": "{\"user\": [1, 2]}", "overwrite": "yes", "now": 1710000002.0},
        {"op": "add", "name": "entry-010", "write": None, "read": cap_of("chk"),
         "metadata_json": None, "overwrite": "no", "now": 1710000003.0},
        {"op": "add", "name": "entry-011", "write": None, "read": cap_of("chk"),
         "metadata_json": None, "overwrite": "only-files", "now": 1710000003.0},
        {"op": "add", "name": "entry-013", "write": None, "read": cap_of("chk"),
         "metadata_json": None, "overwrite": "only-files", "now": 1710000003.5},
        {"op": "remove", "name": "entry-000", "now": 1710000004.0},
        {"op": "remove", "name": "no-such", "now": 1710000004.0},
        {"op": "rename", "from": "entry-014", "to": "renamed", "overwrite": "no", "now": 1710000005.75},
        {"op": "rename", "from": "entry-021", "to": "entry-022", "overwrite": "yes", "now": 1710000006.0},
        {"op": "set_metadata", "name": "entry-028", "metadata_json": "{\"k\": \"v\", \"tahoe\": {\"linkcrtime\": 0}}",
         "now": 1710000007.0},
        {"op": "add", "name": "made-read-only", "write": cap_of("dir2"), "read": None,
         "metadata_json": "{\"no-write\": true}", "overwrite": "no", "now": 1710000008.0},
        {"op": "add", "name": "e\u0301-decomposed", "write": None, "read": cap_of("lit"),
         "metadata_json": "{}", "overwrite": "no", "now": 1e16},
    ]),
    run_edits("metadata", [
        # legacy ctime becomes linkcrtime
        {"op": "add", "name": "md-01", "write": None, "read": cap_of("chk"),
         "metadata_json": None, "overwrite": "yes", "now": 1720000000.0},
        {"op": "set_metadata", "name": "md-06", "metadata_json": "{\"new\": 1}", "now": 1720000001.0},
        {"op": "set_metadata", "name": "md-07", "metadata_json": "{}", "now": 0.0001},
        {"op": "add", "name": "unknown", "write": FUTURE_WRITE.decode(), "read": FUTURE_READ.decode(),
         "metadata_json": None, "overwrite": "no", "now": 1720000002.0},
    ]),
]

# Python float repr on many values (the riskiest part of matching json.dumps byte for byte):
# random bit patterns, clock readings like time.time(), and short decimals.
import struct  # noqa: E402

floats = []
while len(floats) < 400:
    f = struct.unpack("<d", rb(8))[0]
    if f == f and f not in (float("inf"), float("-inf")):
        floats.append(f)
floats += [1.7e9 + rng.random() * 1e8 for _ in range(300)]
floats += [round(rng.uniform(-1e6, 1e6), rng.randrange(0, 7)) for _ in range(200)]
floats += [rng.random() * 10.0 ** rng.randrange(-12, 22) for _ in range(100)]
# values with short exact expansions, where two shortest candidates can tie (Python: half-even)
floats += [float(rng.randrange(2 ** 46, 2 ** 52)) + rng.choice([0.125, 0.25, 0.5, 0.75, 0.375])
           for _ in range(300)]
floats += [float(rng.randrange(2 ** 53, 2 ** 60) * 2) for _ in range(100)]
float_reprs = [[struct.pack("<d", f).hex(), json.dumps(f)] for f in floats]

out = {
    "source": "generated by tests/vectors/gen_dirnode_vectors.py with Tahoe-LAFS's allmydata.dirnode",
    "tahoe_version": allmydata.__version__,
    "python_version": sys.version.split()[0],
    "cases": cases,
    "edits": edits,
    "float_reprs": float_reprs,
}
json.dump(out, sys.stdout, indent=1, ensure_ascii=True)
sys.stdout.write("\n")
