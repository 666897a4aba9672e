#!/usr/bin/env python3
"""Record known zfec outputs for core/tests/zfec_known_outputs.rs.

For a fixed table of (k, n) and a few block lengths, derives k input blocks deterministically
from SHA-256 (no randomness, so reruns give the same inputs), encodes them with the real zfec
(`zfec.Encoder(k, n).encode(blocks)`), and writes inputs and all n outputs as hex to
zfec_vectors.json next to this script.

Rerun (from anywhere):

    pip install zfec
    python3 core/tests/data/gen_zfec_vectors.py

The output only changes if zfec's encoding changes (it has been stable for over a decade), so a
diff in the JSON after a rerun is worth investigating, not just committing.
"""

import hashlib
import json
import os

import zfec

# (k, n, block lengths). Narrow codes get longer blocks; wide ones short blocks, to keep the
# file small while still crossing the 32-byte SIMD width for the common geometries.
TABLE = [
    (1, 1, [0, 1, 17]),
    (1, 3, [1, 64]),
    (1, 256, [3]),
    (2, 2, [1, 33]),
    (2, 3, [5, 64]),
    (3, 10, [0, 1, 13, 64]),
    (5, 8, [31, 33]),
    (7, 12, [40]),
    (16, 32, [9, 33]),
    (25, 50, [1, 33]),
    (25, 100, [1, 7]),
    (101, 256, [1, 5]),
    (128, 200, [3]),
    (255, 256, [1, 4]),
    (256, 256, [2]),
]


def derive(label: str, length: int) -> bytes:
    """`length` bytes from SHA-256 in counter mode over `label`."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return out[:length]


def main() -> None:
    vectors = []
    for k, n, block_lens in TABLE:
        for block_len in block_lens:
            label = f"lafs zfec vector k={k} n={n} block_len={block_len}"
            data = derive(label, k * block_len)
            blocks = [data[i * block_len:(i + 1) * block_len] for i in range(k)]
            encoded = zfec.Encoder(k, n).encode(blocks)
            assert len(encoded) == n
            vectors.append({
                "k": k,
                "n": n,
                "block_len": block_len,
                "input_blocks": [b.hex() for b in blocks],
                "encoded_blocks": [bytes(b).hex() for b in encoded],
            })
    doc = {
        "generator": "core/tests/data/gen_zfec_vectors.py",
        "zfec_version": getattr(zfec, "__version__", "unknown"),
        "vectors": vectors,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zfec_vectors.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {path}")


if __name__ == "__main__":
    main()
