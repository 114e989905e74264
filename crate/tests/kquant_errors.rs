//! Corrupt K-quant tensors give typed errors: a row that is not whole 256-value super-blocks,
//! data cut short, and a repack of bytes that are not whole blocks.

use llama_webgpu::gguf::{GgmlType, GgufFile, GgufWriter};
use llama_webgpu::kernels::repack;
use llama_webgpu::Error;

/// A one-tensor GGUF whose tensor is [cols, rows] of `ty`.
fn file(ty: GgmlType, cols: u64, rows: u64) -> Vec<u8> {
    let mut w = GgufWriter::new(vec![], vec![("w".into(), vec![cols, rows], ty)], 32).unwrap();
    let mut out = Vec::new();
    w.write_header(&mut out).unwrap();
    let n = (cols / ty.block_size() * ty.type_size() * rows) as usize;
    w.write_tensor_data(&mut out, &vec![0u8; n]).unwrap();
    out
}

#[test]
fn kquant_data_shorter_than_its_blocks_is_truncated() {
    for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        let mut f = file(ty, 512, 3);
        f.truncate(f.len() - ty.type_size() as usize / 2);
        match GgufFile::read(&f) {
            Err(Error::Truncated { .. }) => {}
            other => panic!("{ty:?}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn kquant_row_not_whole_super_blocks_is_corrupt() {
    for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        let mut f = file(ty, 512, 3);
        // patch dims[0] (512 → 320) in the tensor info right after the name "w" and n_dims
        let at = f.windows(13).position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b'w', 2, 0, 0, 0]).unwrap() + 13;
        f[at..at + 8].copy_from_slice(&320u64.to_le_bytes());
        match GgufFile::read(&f) {
            Err(Error::Corrupt(m)) => assert!(m.contains('w') && m.contains("320"), "{m}"),
            other => panic!("{ty:?}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn repack_of_partial_kquant_rows_is_an_error() {
    let (mut qs, mut sc) = (Vec::new(), Vec::new());
    let r = repack(GgmlType::Q4K, 512, &[0u8; 144 * 2 + 10], &mut qs, &mut sc);
    assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
}
