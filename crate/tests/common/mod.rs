//! Helpers shared by the integration tests.

use std::path::Path;

/// A float32 C-order `.npy` file → (shape, data).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("False"), "{header}");
    let shape_s = &header[header.find('(').unwrap() + 1..header.find(')').unwrap()];
    let shape = shape_s.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    (shape, bytemuck::pod_collect_to_vec(&b[10 + hlen..]))
}
