//! The simd128 operations [`lanes4`](super::lanes4) uses, on NEON: a `v128` is 16 bytes that each operation
//! views as its lanes (the reinterprets are free). Where NEON has a fused multiply-add, `madd`
//! uses it.

use std::arch::aarch64::*;

pub type v128 = uint8x16_t;

#[inline]
#[target_feature(enable = "neon")]
fn f(v: v128) -> float32x4_t {
    vreinterpretq_f32_u8(v)
}
#[inline]
#[target_feature(enable = "neon")]
fn s16(v: v128) -> int16x8_t {
    vreinterpretq_s16_u8(v)
}
#[inline]
#[target_feature(enable = "neon")]
fn u16(v: v128) -> uint16x8_t {
    vreinterpretq_u16_u8(v)
}
#[inline]
#[target_feature(enable = "neon")]
pub fn madd(acc: v128, a: v128, b: v128) -> v128 {
    vreinterpretq_u8_f32(vfmaq_f32(f(acc), f(a), f(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_splat(x: f32) -> v128 {
    vreinterpretq_u8_f32(vdupq_n_f32(x))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_add(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_f32(vaddq_f32(f(a), f(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_mul(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_f32(vmulq_f32(f(a), f(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_sub(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_f32(vsubq_f32(f(a), f(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_extract_lane<const N: i32>(v: v128) -> f32 {
    vgetq_lane_f32::<N>(f(v))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn f32x4_convert_i32x4(v: v128) -> v128 {
    vreinterpretq_u8_f32(vcvtq_f32_s32(vreinterpretq_s32_u8(v)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i32x4_extend_low_i16x8(v: v128) -> v128 {
    vreinterpretq_u8_s32(vmovl_s16(vget_low_s16(s16(v))))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i32x4_extend_high_i16x8(v: v128) -> v128 {
    vreinterpretq_u8_s32(vmovl_high_s16(s16(v)))
}
/// # Safety
/// `p` points at 8 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn u16x8_load_extend_u8x8(p: *const u8) -> v128 {
    unsafe { vreinterpretq_u8_u16(vmovl_u8(vld1_u8(p))) }
}
/// # Safety
/// `p` points at 8 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn i16x8_load_extend_i8x8(p: *const i8) -> v128 {
    unsafe { vreinterpretq_u8_s16(vmovl_s8(vld1_s8(p))) }
}
/// # Safety
/// `p` points at 16 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn v128_load(p: *const v128) -> v128 {
    unsafe { vld1q_u8(p as *const u8) }
}
#[inline]
#[target_feature(enable = "neon")]
pub fn v128_and(a: v128, b: v128) -> v128 {
    vandq_u8(a, b)
}
#[inline]
#[target_feature(enable = "neon")]
pub fn v128_or(a: v128, b: v128) -> v128 {
    vorrq_u8(a, b)
}
#[inline]
#[target_feature(enable = "neon")]
pub fn u16x8_shr(v: v128, n: u32) -> v128 {
    vreinterpretq_u8_u16(vshlq_u16(u16(v), vdupq_n_s16(-((n & 15) as i16))))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_shl(v: v128, n: u32) -> v128 {
    vreinterpretq_u8_s16(vshlq_s16(s16(v), vdupq_n_s16((n & 15) as i16)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_sub(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_s16(vsubq_s16(s16(a), s16(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_splat(x: i16) -> v128 {
    vreinterpretq_u8_s16(vdupq_n_s16(x))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn u16x8_splat(x: u16) -> v128 {
    vreinterpretq_u8_u16(vdupq_n_u16(x))
}
#[inline]
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub fn u16x8(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> v128 {
    let v = [a, b, c, d, e, f, g, h];
    // SAFETY: 8 u16 values.
    unsafe { vreinterpretq_u8_u16(vld1q_u16(v.as_ptr())) }
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_ne(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_u16(vmvnq_u16(vceqq_u16(u16(a), u16(b))))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_add(a: v128, b: v128) -> v128 {
    vreinterpretq_u8_s16(vaddq_s16(s16(a), s16(b)))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn u8x16_splat(x: u8) -> v128 {
    vdupq_n_u8(x)
}
#[inline]
#[target_feature(enable = "neon")]
pub fn u8x16_shr(v: v128, n: u32) -> v128 {
    vshlq_u8(v, vdupq_n_s8(-((n & 7) as i8)))
}
/// Lanes of `a` picked by the byte indices of `s` (0 where out of range, as simd128).
#[inline]
#[target_feature(enable = "neon")]
pub fn i8x16_swizzle(a: v128, s: v128) -> v128 {
    vqtbl1q_u8(a, s)
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_extend_low_i8x16(v: v128) -> v128 {
    vreinterpretq_u8_s16(vmovl_s8(vget_low_s8(vreinterpretq_s8_u8(v))))
}
#[inline]
#[target_feature(enable = "neon")]
pub fn i16x8_extend_high_i8x16(v: v128) -> v128 {
    vreinterpretq_u8_s16(vmovl_high_s8(vreinterpretq_s8_u8(v)))
}
