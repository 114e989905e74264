"""Random Q4_K/Q5_K/Q6_K, Q2_K/Q3_K and IQ4_NL/IQ4_XS blocks and their values as llama.cpp's `gguf` package
dequantizes them: the trusted reference for our K-quant unpacking and GPU kernels.
Writes tests/fixtures/kquant-<type>.bin (raw blocks) and .npy (float32 values)."""
from pathlib import Path
import numpy as np
import gguf
from gguf.quants import dequantize

OUT = Path(__file__).parent / "fixtures"
N_BLOCKS = 24  # 24 super-blocks = 6144 values = e.g. 3 rows of 2048


def f16_bytes(rng, n, lo, hi):
    return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8).reshape(n, 2)


def blocks(ty, rng):
    n = N_BLOCKS
    rnd = lambda k: rng.integers(0, 256, (n, k), dtype=np.uint8)
    if ty == "q4_k":
        parts = [f16_bytes(rng, n, 1e-3, 2e-2), f16_bytes(rng, n, 1e-3, 2e-2), rnd(12), rnd(128)]
    elif ty == "q5_k":
        parts = [f16_bytes(rng, n, 1e-3, 2e-2), f16_bytes(rng, n, 1e-3, 2e-2), rnd(12), rnd(32), rnd(128)]
    elif ty == "q6_k":  # ql, qh, scales (int8), d
        parts = [rnd(128), rnd(64), rnd(16), f16_bytes(rng, n, 1e-4, 2e-3)]
    elif ty == "q2_k":  # scales (4-bit scale | 4-bit min), qs, d, dmin
        parts = [rnd(16), rnd(64), f16_bytes(rng, n, 1e-3, 2e-2), f16_bytes(rng, n, 1e-3, 2e-2)]
    elif ty == "q3_k":  # hmask, qs, scales (6-bit, packed), d
        parts = [rnd(32), rnd(64), rnd(12), f16_bytes(rng, n, 1e-4, 2e-3)]
    elif ty == "iq4_nl":  # d, qs: 32-value blocks, as many values as the others
        n = N_BLOCKS * 8
        parts = [f16_bytes(rng, n, 1e-4, 2e-3), rng.integers(0, 256, (n, 16), dtype=np.uint8)]
    else:  # iq4_xs: d, scales_h (u16), scales_l[4], qs
        parts = [f16_bytes(rng, n, 1e-5, 2e-4), rnd(2), rnd(4), rnd(128)]
    return np.concatenate(parts, axis=1)


def main():
    rng = np.random.default_rng(7)
    for ty, qt in [("q4_k", gguf.GGMLQuantizationType.Q4_K), ("q5_k", gguf.GGMLQuantizationType.Q5_K),
                   ("q6_k", gguf.GGMLQuantizationType.Q6_K)]:
        raw = blocks(ty, rng)
        vals = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert vals.size == N_BLOCKS * 256 and np.isfinite(vals).all()
        (OUT / f"kquant-{ty}.bin").write_bytes(raw.tobytes())
        np.save(OUT / f"kquant-{ty}.npy", vals)
        print(ty, raw.shape, float(np.abs(vals).max()))
    # the formats added later draw from their own generator, so the files above stay as they were
    rng = np.random.default_rng(23)
    for ty, qt in [("q2_k", gguf.GGMLQuantizationType.Q2_K), ("q3_k", gguf.GGMLQuantizationType.Q3_K),
                   ("iq4_nl", gguf.GGMLQuantizationType.IQ4_NL), ("iq4_xs", gguf.GGMLQuantizationType.IQ4_XS)]:
        raw = blocks(ty, rng)
        vals = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert vals.size == N_BLOCKS * 256 and np.isfinite(vals).all()
        (OUT / f"kquant-{ty}.bin").write_bytes(raw.tobytes())
        np.save(OUT / f"kquant-{ty}.npy", vals)
        print(ty, raw.shape, float(np.abs(vals).max()))


if __name__ == "__main__":
    main()
