// Flash attention for CPU adapters (lavapipe), attention.wgsl's contract and parameters. On a
// CPU "GPU" a subgroup is one SIMD vector, any load not at a constant address a per-lane
// gather (uniform ones too: a q read per key cost more than the K row), every barrier a
// costly switch, and private arrays are only fast as named registers. So a workgroup is
// exactly one subgroup (no barrier, no workgroup memory); each lane owns value chunks
// c_j = li + j·WG (4 values each) and holds its chunks of the G query heads of the group; the
// split is walked in blocks of WG keys: each K row (read once for all G heads) gives G scores
// summed across the subgroup, lane i keeping key kb + i's; one online-softmax step per block;
// then each V row, read once, weighted by its key's G weights (broadcast from its lane).
// Measured on lavapipe, SmolLM2 at depth 2048: about 2.5× less CPU time than lanes over keys.
//
// A template: a line starting with `#g ` is repeated for g = 0..G, `#j ` for j = 0..NC and
// `#gj ` for both, with {g} and {j} replaced (flash_cpu_source in gpu/kernels/attention.rs),
// so every per-head and per-chunk value is its own variable. Constants: WG (the subgroup
// size), HD, HD4 (HD / 4), G.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let kvh = wg.x / p.splits;
    let split = wg.x % p.splits;
    let t = wg.y;
    let hi = min(step.pos + t + 1u, p.pos0 + p.part_len);
    var n = 0u;
    if (hi > p.pos0) {
        n = hi - p.pos0;
    }
    let span = ((n + p.splits - 1u) / p.splits + 31u) / 32u * 32u;
    let k_start = min(p.pos0 + split * span, p.pos0 + n);
    let k_end = min(k_start + span, p.pos0 + n);
    // the group's first query row (float index): head g's is q0 + g·HD
    let q0 = (t * p.n_head + kvh * G) * HD;
    let row0 = kvh * p.row_bytes;
    // chunk j of the lane (a lane past HD4 reads the last one, with zero queries)
    #j let c{j} = min(li + {j}u * WG, HD4 - 1u);
    #j let ok{j} = li + {j}u * WG < HD4;
    #gj let qi{g}_{j} = q0 + {g}u * HD + 4u * c{j};
    #gj let q{g}_{j} = select(vec4<f32>(0.0), vec4<f32>(q[qi{g}_{j}], q[qi{g}_{j} + 1u], q[qi{g}_{j} + 2u], q[qi{g}_{j} + 3u]) * p.scale, ok{j});
    #gj var acc{g}_{j} = vec4<f32>(0.0);
    #g var m{g} = NEG;
    #g var l{g} = 0.0;
    for (var kb = k_start; kb < k_end; kb += WG) {
        let nk = min(WG, k_end - kb);
        let live = li < nk;
        #g var s{g} = NEG;
        for (var jk = 0u; jk < nk; jk++) {
            let kbase = (kb + jk - p.pos0) * p.pos_bytes + row0;
            #j let k{j} = kv4(false, kbase, c{j});
            #g var d{g} = 0.0;
            #gj d{g} += dot(q{g}_{j}, k{j});
            #g s{g} = select(s{g}, subgroupAdd(d{g}), li == jk);
        }
        #g let mn{g} = max(m{g}, subgroupMax(s{g}));
        #g let a{g} = exp(m{g} - mn{g});
        #g let e{g} = select(0.0, exp(s{g} - mn{g}), live);
        #g l{g} = l{g} * a{g} + subgroupAdd(e{g});
        #g m{g} = mn{g};
        #gj acc{g}_{j} *= a{g};
        for (var jk = 0u; jk < nk; jk++) {
            let vbase = (kb + jk - p.pos0) * p.pos_bytes + row0;
            #g let w{g} = subgroupShuffle(e{g}, jk);
            #j let v{j} = kv4(true, vbase, c{j});
            #gj acc{g}_{j} += w{g} * v{j};
        }
    }
    let slice = p.slice0 + split;
    #g out(t * p.n_head + kvh * G + {g}u, slice, li == 0u, m{g}, l{g});
    #gj put(t * p.n_head + kvh * G + {g}u, slice, ok{j}, c{j}, acc{g}_{j}, l{g});
}

// Writes row `row`'s (m, l) to the partials (lane 0, when not direct).
fn out(row: u32, slice: u32, first: bool, m: f32, l: f32) {
    if (p.direct == 0u && first) {
        o[p.ml0 + (slice * p.rows_stride + row) * 2u] = m;
        o[p.ml0 + (slice * p.rows_stride + row) * 2u + 1u] = l;
    }
}

// Writes values 4c..4c+3 of row `row`: normalised to `o` when direct, else to the partials.
fn put(row: u32, slice: u32, ok: bool, c: u32, acc: vec4<f32>, l: f32) {
    if (ok) {
        var y = acc;
        var at = row * HD + 4u * c;
        if (p.direct == 1u) {
            y /= l;
        } else {
            at = (slice * p.rows_stride + row) * HD + 4u * c;
        }
        o[at] = y.x;
        o[at + 1u] = y.y;
        o[at + 2u] = y.z;
        o[at + 3u] = y.w;
    }
}
